"""Seeds built in worker processes: results in seed order, one torch thread per worker, errors name the seed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import imitlib.config
from imitlib.parallel import WorkerError, for_seeds, seed_worker_count, worker_threads
from imitlib.world.report import stage_wall_seconds


def record_process(cfg, seed: int) -> dict:
    """Build step of the tests: writes which process and how many torch threads built this seed."""
    import torch

    out = Path(cfg.run.output_root) / f"seed{seed}.json"
    if not out.exists():
        out.write_text(json.dumps({"pid": os.getpid(), "threads": torch.get_num_threads(),
                                   "progress": cfg.run.progress}))
    return {"seed": seed, **json.loads(out.read_text())}


def fail_on_seed_one(cfg, seed: int) -> int:
    if seed == 1:
        raise ValueError("bad seed")
    return seed


class UnpicklableError(Exception):
    """Like transformers' config validation errors: ``__init__`` needs an argument its pickle does not keep."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


def fail_unpicklably_on_seed_one(cfg, seed: int) -> int:
    if seed == 1:
        raise UnpicklableError("head size 21 is odd", cause="rope")
    return seed


def _cfg(tmp_path: Path, seeds: list[int], workers: int, threads: int = 0):
    return imitlib.config.load([], {"run.seeds": seeds, "run.seed_workers": workers, "run.torch_threads": threads,
                                    "run.output_root": str(tmp_path), "run.device": "cpu"}, run_name="parallel")


def test_seeds_are_built_in_worker_processes_and_returned_in_seed_order(tmp_path):
    cfg = _cfg(tmp_path, [3, 1, 2], workers=2)
    results = for_seeds(record_process, cfg)
    assert [r["seed"] for r in results] == [3, 1, 2]
    assert all(r["pid"] != os.getpid() for r in results)
    assert {r["threads"] for r in results} == {max(1, (os.cpu_count() or 1) // 2)}
    assert not any(r["progress"] for r in results)  # workers draw no progress bars over each other


def test_one_worker_builds_in_this_process_with_the_configured_threads(tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        results = for_seeds(record_process, _cfg(tmp_path, [0, 1], workers=1, threads=1))
    finally:
        torch.set_num_threads(before)
    assert [r["pid"] for r in results] == [os.getpid(), os.getpid()]
    assert [r["threads"] for r in results] == [1, 1]


def test_a_failing_seed_raises_its_own_error_naming_the_seed(tmp_path):
    with pytest.raises(ValueError, match="bad seed") as info:
        for_seeds(fail_on_seed_one, _cfg(tmp_path, [0, 1], workers=2))
    assert any("seed 1" in note for note in getattr(info.value, "__notes__", []))


def test_an_error_that_does_not_pickle_still_reaches_the_parent_with_its_message(tmp_path):
    # sent back as itself it would break the pool ("terminated abruptly") and hide the cause
    with pytest.raises(WorkerError, match="UnpicklableError: head size 21 is odd") as info:
        for_seeds(fail_unpicklably_on_seed_one, _cfg(tmp_path, [0, 1], workers=2))
    assert "fail_unpicklably_on_seed_one" in str(info.value)  # the worker's traceback
    assert any("seed 1" in note for note in getattr(info.value, "__notes__", []))


def test_worker_count_and_threads(tmp_path):
    assert seed_worker_count(_cfg(tmp_path, [0, 1, 2], workers=8)) == 3
    assert seed_worker_count(_cfg(tmp_path, [0], workers=4)) == 1
    assert worker_threads(_cfg(tmp_path, [0, 1], workers=2, threads=3), 2) == 3
    assert worker_threads(_cfg(tmp_path, [0, 1, 2], workers=3), 3) >= 1


def test_stage_wall_time_counts_overlapping_builds_once(tmp_path):
    spans = {"a": (100.0, 160.0), "b": (110.0, 150.0), "c": (200.0, 230.0)}
    for name, (start, finish) in spans.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps({"timings": {"started": start, "finished": finish}}))
    assert stage_wall_seconds([tmp_path / n for n in spans]) == pytest.approx(60.0 + 30.0)
    assert stage_wall_seconds([tmp_path / "a"]) == pytest.approx(60.0)


def test_complete_seeds_are_only_loaded_in_this_process(tmp_path):
    cfg = _cfg(tmp_path, [0, 1, 2], workers=3)
    results = for_seeds(record_process, cfg, done=lambda c, seed: seed != 2)
    assert [r["pid"] == os.getpid() for r in results] == [True, True, True]  # one seed left: no worker processes
    (tmp_path / "b").mkdir()
    results = for_seeds(record_process, _cfg(tmp_path / "b", [0, 1, 2], workers=3), done=lambda c, seed: seed == 0)
    assert [r["pid"] == os.getpid() for r in results] == [True, False, False]


def build_counted_stage(cfg, seed: int) -> str:
    """Build step of the force test: a real cached stage; every build appends a line to builds.log."""
    from imitlib.stages import Stage

    stage = Stage(cfg, f"counted/seed{seed}", reads=["run.seeds"], extra={"seed": seed}, seeds=[seed])
    if not stage.done:
        with stage.build() as work:
            (work / "value.txt").write_text(str(seed))
            with open(Path(cfg.run.output_root) / "builds.log", "a") as log:
                log.write(f"{seed} {os.getpid()}\n")
    return (stage.path / "value.txt").read_text()


@pytest.mark.parametrize("workers", [1, 2])
def test_force_builds_each_seed_once_with_or_without_workers(tmp_path, workers):
    cfg = _cfg(tmp_path, [0, 1], workers=workers, threads=1)
    assert for_seeds(build_counted_stage, cfg) == ["0", "1"]
    log = tmp_path / "builds.log"
    assert sorted(line.split()[0] for line in log.read_text().splitlines()) == ["0", "1"]
    log.unlink()
    forced = cfg.model_copy(update={"run": cfg.run.model_copy(update={"force": True})})
    assert for_seeds(build_counted_stage, forced) == ["0", "1"]
    # --force rebuilds every seed exactly once (before: once in the workers and again in this process)
    assert sorted(line.split()[0] for line in log.read_text().splitlines()) == ["0", "1"]
