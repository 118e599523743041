"""Reliability: ``python -m imitlib run`` SIGKILLed at a seeded point, then rerun, gives the same results
as an uninterrupted run, and no stage is ever marked complete with missing or altered files (issue 10,
item 2: a whole pipeline run).

Both runs use ``tests/fixtures/reliability/tiny_pipeline.yaml`` (the whole study at its smallest) under
tmp output roots. The uninterrupted run and the killed run go side by side to save time; the killed run
is restarted as soon as it is dead.

The kill takes everything the run started at once: the pipeline's own process group (it is started in a
new session) and the process group of each of its descendants, since jupyter_client starts every
notebook kernel in a session of its own. The pipeline is stopped first (SIGSTOP) so that it cannot
start a kernel between listing its descendants and killing them.

``IMITLIB_KILL_SEED=N`` picks another kill point: a notebook, and a delay after its stage's build
starts (seen as the stage's partial folder appearing).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from imitlib.config import PROJECT_ROOT
from imitlib.stages import COMPLETE_MARKER, MANIFEST

TINY = Path(__file__).parent / "fixtures" / "reliability" / "tiny_pipeline.yaml"
RUN_NAME = "tiny"
NOTEBOOKS = ("01_world", "02_imitation_data", "03_train", "04_evaluate", "05_analysis")
KILL_SEED = int(os.environ.get("IMITLIB_KILL_SEED", "13"))  # 03_train, 2.3 s into its build
RUN_TIMEOUT_S = 480
HASH_FOLDER = re.compile(r"^[0-9a-f]{10}$")
DATASETS_CACHE = re.compile(r"cache-[0-9a-f]{16}\.arrow|tmp[0-9a-z_]{8}")
# wall-clock records, not results: left out of the comparison
TIMING_FILES = {"tables/01_world_checks.csv"}  # the world's check of its own build time
TIMING_KEYS = {"seconds", "timings"}  # in a stage's JSON files
TEXT_SUFFIXES = {".json", ".jsonl", ".yaml", ".csv", ".md", ".txt"}


class Run:
    """``python -m imitlib run`` in a session of its own, its stderr lines read (with their times) by a thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        command = [sys.executable, "-m", "imitlib", "run", str(TINY), "--run-name", RUN_NAME, "--no-report",
                   "--set", f"run.output_root={root}", "--set", "run.allow_external_output_root=true"]
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True, start_new_session=True,
                                        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append((time.monotonic(), line.rstrip()))

    def log(self) -> str:
        return "\n".join(line for _, line in self.lines if "WARNING" not in line)[-3000:]

    def started_notebook(self, name: str) -> float | None:
        """When the pipeline announced it starts notebook ``name`` (None: not yet)."""
        for at, line in list(self.lines):
            if line.startswith("[") and f"] {name} " in line:
                return at
        return None

    def finished_notebook(self, name: str) -> bool:
        return any(f"{name} done in" in line for _, line in list(self.lines))

    def wait(self) -> int:
        try:
            code = self.process.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill_everything()
            raise AssertionError(f"the run under {self.root} took over {RUN_TIMEOUT_S} s:\n{self.log()}")
        self.reader.join(timeout=10)
        return code

    def kill_everything(self) -> list[int]:
        """SIGKILL the pipeline and every process it started (kernels included); wait until all are gone."""
        try:
            os.killpg(self.process.pid, signal.SIGSTOP)  # it can no longer start anything
        except ProcessLookupError:
            pass
        try:
            descendants = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        groups = {self.process.pid}
        for child in descendants:
            try:
                groups.add(os.getpgid(child.pid))
            except ProcessLookupError:
                pass
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for child in descendants:  # any left in a group of their own
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait(timeout=60)
        deadline = time.monotonic() + 60
        alive = descendants
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            time.sleep(0.1)
        assert not alive, f"processes still running after SIGKILL: {alive}"
        return sorted(p.pid for p in descendants)


def kill_point(seed: int) -> tuple[str, float]:
    """Where the run is killed: a notebook, and a delay after its stage's build starts (after the
    notebook starts, for the analysis, which has no stage)."""
    rng = random.Random(seed)
    return rng.choice(NOTEBOOKS), round(rng.uniform(0.0, 8.0), 2)


def building_since(run: Run, notebook: str, seen: dict[str, float]) -> float | None:
    """When a partial folder of ``notebook``'s stage was first seen (None: not yet)."""
    if notebook not in seen and any((run.root / RUN_NAME / "stages" / notebook).rglob("*.partial")):
        seen[notebook] = time.monotonic()
    return seen.get(notebook)


def kill_at(run: Run, notebook: str, delay_s: float) -> str:
    """SIGKILL ``run`` ``delay_s`` after ``notebook`` starts building its stage (or as soon as the
    notebook is done, if sooner); returns where the kill landed."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        if run.process.poll() is not None:
            raise AssertionError(f"the run ended (code {run.process.returncode}) before the kill point:\n{run.log()}")
        start = (run.started_notebook(notebook) if notebook == "05_analysis"
                 else building_since(run, notebook, seen))
        if run.finished_notebook(notebook) or (start is not None and time.monotonic() >= start + delay_s):
            break
        time.sleep(0.02)
    else:
        raise AssertionError(f"notebook {notebook} never started:\n{run.log()}")
    run.kill_everything()
    running = [n for n in NOTEBOOKS if run.started_notebook(n) is not None and not run.finished_notebook(n)]
    if not running:
        return f"right after {notebook} finished"
    since = seen.get(running[-1])
    return (f"{running[-1]}, {time.monotonic() - since:.1f} s into its stage's build" if since is not None
            else f"{running[-1]}, {time.monotonic() - run.started_notebook(running[-1]):.1f} s after it started")


# ---- the state a run leaves ---------------------------------------------------------------------
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_stage_folders(run_dir: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Every stage folder marked complete holds every file its manifest lists, byte for byte; every
    other stage folder is a partial one. Returns {stage/hash: {file: sha256}} of the complete ones and
    the partial folders."""
    complete: dict[str, dict[str, str]] = {}
    partial: list[str] = []
    stages = run_dir / "stages"
    for folder in sorted(p for p in stages.rglob("*") if p.is_dir()) if stages.exists() else []:
        name = str(folder.relative_to(stages))
        if folder.name.endswith(".partial") and HASH_FOLDER.match(folder.name.split(".")[0]):
            partial.append(name)
            continue
        if not HASH_FOLDER.match(folder.name):
            continue
        assert (folder / COMPLETE_MARKER).is_file(), f"{name}: a stage folder without its {COMPLETE_MARKER} marker"
        manifest = json.loads((folder / MANIFEST).read_text())
        assert manifest["hash"] == folder.name and (folder / COMPLETE_MARKER).read_text().strip() == folder.name
        listed = manifest["files"]
        assert listed, f"{name}: complete with no files"
        for rel, meta in listed.items():
            target = folder / rel
            assert target.is_file(), f"{name}: marked complete but {rel} is missing"
            assert target.stat().st_size == meta["bytes"] and sha256(target) == meta["sha256"], (
                f"{name}: marked complete but {rel} differs from its manifest")
        on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
        extra = on_disk - set(listed) - {MANIFEST, COMPLETE_MARKER}
        # the datasets library caches the result of filtering a saved dataset beside it (written to a
        # temporary file first), after the stage completed: harmless, never read as the stage's data
        assert all(DATASETS_CACHE.fullmatch(Path(rel).name) for rel in extra), f"{name}: files not in the manifest: {extra}"
        complete[name] = {rel: meta["sha256"] for rel, meta in listed.items()}
    return complete, partial


def _without_timings(node: object) -> object:
    if isinstance(node, dict):
        return {k: _without_timings(v) for k, v in node.items() if k not in TIMING_KEYS}
    if isinstance(node, list):
        return [_without_timings(v) for v in node]
    return node


def stage_contents(run_dir: Path, complete: dict[str, dict[str, str]]) -> dict[str, str]:
    """{stage/hash/file: its content, comparable across output roots}: the sha256 of binary files
    (model weights, arrow tables), text with the output root replaced, and JSON without wall-clock
    timings."""
    root = str(run_dir.parent)
    out = {}
    for name, files in complete.items():
        for rel, digest in files.items():
            path = run_dir / "stages" / name / rel
            if path.suffix not in TEXT_SUFFIXES:
                out[f"{name}/{rel}"] = digest
                continue
            text = path.read_text().replace(root, "<root>")
            if path.suffix == ".json":
                text = json.dumps(_without_timings(json.loads(text)), sort_keys=True)
            out[f"{name}/{rel}"] = text
    return out


def results(run_dir: Path) -> dict[str, object]:
    """What a finished run produced: analysis tables and scorecard (paths made root-relative), and the
    contents of each seed's samples and benchmarks tables."""
    out: dict[str, object] = {}
    for path in sorted(run_dir.glob("tables/*")) + [run_dir / "scorecard.md"]:
        rel = str(path.relative_to(run_dir))
        if rel not in TIMING_FILES:
            out[rel] = path.read_text().replace(str(run_dir), "<run>")
    for name in ("samples.parquet", "benchmarks.parquet"):
        found = sorted(run_dir.glob(f"stages/04_evaluate/*/*/{name}"))
        assert found, f"no {name} under {run_dir}"
        for path in found:
            frame = pd.read_parquet(path)
            out[str(path.relative_to(run_dir / "stages"))] = frame.to_json(orient="split", double_precision=15)
    return out


@pytest.mark.slow
def test_sigkilled_pipeline_reruns_to_the_results_of_an_uninterrupted_run(tmp_path):
    began = time.monotonic()
    notebook, delay_s = kill_point(KILL_SEED)
    reference = Run(tmp_path / "uninterrupted")
    killed = Run(tmp_path / "killed")
    rerun = None
    try:
        landed = kill_at(killed, notebook, delay_s)
        assert killed.process.returncode == -signal.SIGKILL
        killed_at = time.monotonic() - killed.started
        run_dir = tmp_path / "killed" / RUN_NAME
        complete_after_kill, partial_after_kill = check_stage_folders(run_dir)
        left_partial = sum(1 for name in partial_after_kill for p in (run_dir / "stages" / name).rglob("*") if p.is_file())

        rerun = Run(tmp_path / "killed")
        assert rerun.wait() == 0, f"the rerun failed:\n{rerun.log()}"
        assert reference.wait() == 0, f"the uninterrupted run failed:\n{reference.log()}"
    finally:
        for run in [r for r in (reference, killed, rerun) if r is not None]:
            if run.process.poll() is None:
                run.kill_everything()

    # the rerun kept what was complete at the kill, cleared or resumed every partial folder
    complete, partial = check_stage_folders(run_dir)
    assert partial == [], partial
    for name, files in complete_after_kill.items():
        assert complete.get(name) == files, f"{name}: complete before the rerun, changed by it"
    reference_dir = tmp_path / "uninterrupted" / RUN_NAME
    reference_complete, reference_partial = check_stage_folders(reference_dir)
    assert reference_partial == []
    # the same stages (same hashes: same config), and the same content in each: every model's weights,
    # every dataset and table, byte for byte; text and JSON up to the output root and wall-clock timings
    assert sorted(complete) == sorted(reference_complete)
    ours, theirs = stage_contents(run_dir, complete), stage_contents(reference_dir, reference_complete)
    assert sorted(ours) == sorted(theirs)
    differing = sorted(key for key in ours if ours[key] != theirs[key])
    assert differing == [], differing
    weights = [key for key in ours if key.endswith(".safetensors")]
    assert len(weights) >= 3, weights  # the world's base model and teacher, and the imitation model
    # the same results: every analysis table, the scorecard, each seed's samples and benchmarks
    tables, reference_tables = results(run_dir), results(reference_dir)
    assert sorted(tables) == sorted(reference_tables)
    for key in tables:
        assert tables[key] == reference_tables[key], f"{key} differs after the interrupted run was rerun"
    print(f"\n[interrupt] whole pipeline (seed {KILL_SEED}: {notebook} + {delay_s} s) SIGKILLed in {landed}, "
          f"{killed_at:.0f} s in, with {len(complete_after_kill)} stage(s) complete and "
          f"{len(partial_after_kill)} partial ({left_partial} files); rerun: {len(complete)} stages ({len(ours)} files, {len(weights)} of "
          f"them weights) and "
          f"{len(tables)} result tables identical to the uninterrupted run; {time.monotonic() - began:.0f} s in all")
