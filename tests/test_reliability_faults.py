"""Reliability: a collection survives an endpoint that fails a third of its calls, losing and
duplicating nothing (issue 10, item 1)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "reliability"))
from fault_endpoint import FAULT_KINDS, MODEL_NAME, conversations, expected_answer, fault_app, prompts  # noqa: E402

from imitlib.config import load  # noqa: E402
from imitlib.teacher import collect, open_teacher, sampling_from  # noqa: E402
from imitlib.teacher.cache import CACHE_FILE, response_key  # noqa: E402
from imitlib.teacher.server import serve_in_thread  # noqa: E402

N_PROMPTS = 240


def _teacher_params(base_url: str, tmp_path: Path, **extra):
    overrides = {"run.output_root": str(tmp_path), "imitation.teacher.backend": "openai",
                 "imitation.teacher.base_url": base_url, "imitation.teacher.model": MODEL_NAME,
                 "imitation.teacher.api_key_env": "IMITLIB_RELIABILITY_UNSET_KEY",
                 "imitation.teacher.backoff_s": 0.001, "imitation.teacher.timeout_s": 1.0,
                 "imitation.teacher.max_retries": 8, "imitation.teacher.max_concurrency": 16, **extra}
    return load([], overrides, run_name="faults").imitation.teacher


def test_collection_survives_faults_with_nothing_lost_or_duplicated(tmp_path, capsys):
    app = fault_app(seed=10, timeout_sleep_s=1.5, kind_weights=[1.0, 1.0, 0.5, 1.0, 1.0])
    texts = prompts(N_PROMPTS)
    # a few repeated prompts: collect asks each distinct conversation once
    asked = conversations(texts + texts[:7])
    with serve_in_thread(app) as base_url:
        settings = _teacher_params(base_url, tmp_path)
        sampling = sampling_from(settings)
        with open_teacher(settings) as teacher:
            answers = collect(asked, teacher, tmp_path / "cache", sampling)
            requests_sent = teacher.requests_sent
    stats = app.state.stats

    # every prompt answered, with its own answer, in order
    assert answers == [expected_answer(t) for t in texts + texts[:7]]
    # the endpoint handed out exactly one good answer per distinct prompt: no prompt asked again once answered
    assert set(stats.answered) == set(texts) and set(stats.answered.values()) == {1}
    assert stats.calls == requests_sent == N_PROMPTS + stats.fault_calls
    # the faults were real and of every kind
    fault_share = stats.fault_calls / stats.calls
    assert fault_share >= 0.20, stats.faults
    assert set(stats.faults) == set(FAULT_KINDS) and min(stats.faults.values()) >= 5, stats.faults
    assert max(stats.attempts.values()) == 4  # some prompts failed three times before their answer

    # the cache file: one line per distinct prompt, no duplicated key, each with its prompt's answer
    lines = (tmp_path / "cache" / CACHE_FILE).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == N_PROMPTS
    assert len({r["key"] for r in records}) == N_PROMPTS
    for record in records:
        prompt = record["messages"][-1]["content"]
        assert record["answer"] == expected_answer(prompt)
        assert record["key"] == response_key(MODEL_NAME, record["messages"], sampling)

    # a rerun over the full cache sends nothing
    with serve_in_thread(fault_app(seed=10)) as base_url:
        with open_teacher(_teacher_params(base_url, tmp_path)) as teacher:
            assert collect(asked, teacher, tmp_path / "cache", sampling) == answers
            assert teacher.requests_sent == 0

    with capsys.disabled():
        print(f"\n[faults] {N_PROMPTS} prompts, {stats.calls} calls, {stats.fault_calls} faults "
              f"({fault_share:.0%}): " + ", ".join(f"{k}={stats.faults[k]}" for k in FAULT_KINDS)
              + f"; lost 0, duplicated 0")
