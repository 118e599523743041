"""Reliability: SIGKILL at a seeded point of a collection and of a stage build; the rerun resumes
(issue 10, item 2).

A whole ``python -m imitlib run`` SIGKILLed and rerun is tests/test_reliability_pipeline_kill.py.
Training's SIGKILL resume is covered by tests/test_train_launch.py (a real SIGKILL, then
``accelerate launch`` resumes to identical weights) and tests/test_train.py
(``test_resume_after_interruption_gives_identical_weights``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "reliability"))
from fault_endpoint import MODEL_NAME, conversations, expected_answer, fault_app, prompts  # noqa: E402

from imitlib.config import PROJECT_ROOT, load  # noqa: E402
from imitlib.stages import COMPLETE_MARKER, MANIFEST, Stage  # noqa: E402
from imitlib.teacher import Sampling, collect  # noqa: E402
from imitlib.teacher.cache import CACHE_FILE, ResponseCache, response_key  # noqa: E402
from imitlib.teacher.client import OpenAITeacher  # noqa: E402
from imitlib.teacher.server import serve_in_thread  # noqa: E402

WORKERS = Path(__file__).parent / "fixtures" / "reliability"
N_PROMPTS = 120
SAMPLING = Sampling(max_new_tokens=16)  # the worker's sampling
NO_TIMEOUTS = ("429", "500", "drop", "garbled")


def _run_and_kill(command: list[str], should_kill: Callable[[list[str]], bool]) -> tuple[list[str], int]:
    """Run ``command``, reading its output lines; SIGKILL it as soon as ``should_kill(lines)``.

    Returns the lines read and the exit code (``-SIGKILL`` when killed).
    """
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.strip())
            if should_kill(lines):
                os.kill(process.pid, signal.SIGKILL)
                break
        return lines, process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigkilled_collection_resumes_sending_only_unanswered_prompts(tmp_path):
    texts = prompts(N_PROMPTS)
    kill_at = random.Random(2023).randint(10, 70)

    # the reference: one uninterrupted collection (through the same kind of faulty endpoint)
    reference_app = fault_app(seed=1, kinds=NO_TIMEOUTS)
    with serve_in_thread(reference_app) as base_url:
        teacher = OpenAITeacher(base_url, MODEL_NAME, "unused", max_concurrency=8, max_retries=8, backoff_s=0.001)
        uninterrupted = collect(conversations(texts), teacher, tmp_path / "reference", SAMPLING)
    assert uninterrupted == [expected_answer(t) for t in texts]

    app = fault_app(seed=2, kinds=NO_TIMEOUTS, answer_delay_s=0.05)
    stats = app.state.stats
    cache_dir = tmp_path / "cache"
    with serve_in_thread(app) as base_url:
        worker = [sys.executable, str(WORKERS / "collect_worker.py"), base_url, str(cache_dir), str(N_PROMPTS)]
        lines, code = _run_and_kill(worker, lambda out: sum(x.startswith("answered") for x in out) == kill_at)
        assert code == -signal.SIGKILL and "finished" not in lines
        cached = ResponseCache(cache_dir)  # also drops a line torn by the kill
        answered_before_kill = {t for t in texts if response_key(MODEL_NAME, conversations([t])[0], SAMPLING) in cached}
        assert kill_at <= len(answered_before_kill) < N_PROMPTS
        attempts_before, answered_counts_before = stats.attempts.copy(), stats.answered.copy()
        faults_before = stats.fault_calls

        teacher = OpenAITeacher(base_url, MODEL_NAME, "unused", max_concurrency=8, max_retries=8, backoff_s=0.001)
        resumed = collect(conversations(texts), teacher, cache_dir, SAMPLING)

    asked_again = {t for t in texts if stats.attempts[t] > attempts_before[t]}
    assert asked_again == set(texts) - answered_before_kill  # only the unanswered prompts were sent
    assert all(stats.answered[t] - answered_counts_before[t] == 1 for t in asked_again)
    assert resumed == uninterrupted
    records = [json.loads(line) for line in (cache_dir / CACHE_FILE).read_text().splitlines()]
    assert len(records) == len({r["key"] for r in records}) == N_PROMPTS
    print(f"\n[interrupt] SIGKILL after {kill_at} answers: {len(answered_before_kill)} cached, "
          f"{len(asked_again)} re-sent, {faults_before} faults before the kill, "
          f"{stats.fault_calls - faults_before} after")


N_FILES = 30


def _stage_state(output_root: Path) -> tuple[Stage, list[Path]]:
    cfg = load([], {"run.output_root": str(output_root)}, run_name="killed")
    stage = Stage(cfg, "reliability/killed", reads=["analysis"])
    return stage, sorted(output_root.rglob(COMPLETE_MARKER))


def test_sigkilled_stage_is_never_complete_and_is_redone_cleanly(tmp_path):
    worker = [sys.executable, str(WORKERS / "stage_worker.py"), str(tmp_path), str(N_FILES)]
    rng = random.Random(10)
    kill_points = [f"wrote {rng.randrange(N_FILES)}", f"wrote {rng.randrange(N_FILES)}", "building"]
    for kill_after in kill_points:
        lines, code = _run_and_kill(worker, lambda out: out[-1] == kill_after)
        assert code == -signal.SIGKILL and "complete" not in lines, lines
        stage, markers = _stage_state(tmp_path)
        assert not stage.done and not stage.path.exists() and markers == []
        written = sorted(stage.partial.glob("part-*.txt"))
        assert len(written) < N_FILES and not (stage.partial / MANIFEST).exists()
        if kill_after.startswith("wrote"):
            assert len(written) >= int(kill_after.split()[1]) + 1
        # each rerun cleared the partial folder: every file in it comes from the last (killed) process
        assert len({p.read_text().split("process ")[1].split()[0] for p in written}) <= 1

    # killed while finalising: either complete and intact, or not complete at all
    lines, code = _run_and_kill(worker, lambda out: out[-1] == "finalising")
    stage, markers = _stage_state(tmp_path)
    if stage.done:
        assert stage.verify() == [] and len(stage.manifest()["files"]) == N_FILES
    else:
        assert markers == [] and not stage.path.exists()

    killed_while_finalising_completed = stage.done
    lines, code = _run_and_kill(worker, lambda out: False)
    assert code == 0 and lines[-1] == "complete"
    stage, markers = _stage_state(tmp_path)
    assert stage.done and markers == [stage.path / COMPLETE_MARKER] and not stage.partial.exists()
    assert sorted(stage.manifest()["files"]) == [f"part-{i:03d}.txt" for i in range(N_FILES)]
    assert stage.verify() == []
    assert [p.name for p in stage.path.parent.iterdir()] == [stage.hash]  # no partial or old folders left
    print(f"\n[interrupt] stage SIGKILLed after {', '.join(kill_points)} and while finalising "
          f"({'completed intact' if killed_while_finalising_completed else 'left incomplete'}): never marked "
          f"complete with missing files; the clean rerun wrote {N_FILES} files")
