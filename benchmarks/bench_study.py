"""Wall time and peak memory of whole study runs (``python -m imitlib run``) in a subprocess.

Cases:

- ``smoke``: ``params/smoke.yaml`` end to end from nothing (fresh output root and run name);
  target ≤ 5 min;
- ``cached``: ``params/default.yaml`` rerun with unchanged params, every stage reused (run it after
  a full default run); up-to-date notebooks are not executed again; target ≤ 60 s;
- ``cached_execute``: the same rerun with ``--execute-all``: every notebook executed, every stage
  loaded from its cache;
- ``full`` (``--full``): ``params/default.yaml`` from scratch in a fresh output root; target
  ≤ 15 min on 2 cores and peak memory ≤ 8 GiB.

Per notebook wall time comes from the executed notebooks' papermill metadata; the profile of the run's
stage builds (time per stage and per kind of work, :mod:`profile_study`) is stored beside it and printed
(for a cached rerun it is the profile of the builds it reused, timed when they were built). Peak memory is the
largest sum of resident set sizes over the process tree (the runner, its kernels, their workers),
polled with psutil; ``ru_maxrss`` of the largest finished child is recorded beside it.

Usage: python benchmarks/bench_study.py smoke | cached | cached_execute | --full
Writes outputs/benchmarks/study_<case>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import profile_study  # noqa: E402
from harness import machine_facts, write  # noqa: E402

from imitlib.config import PROJECT_ROOT  # noqa: E402
from imitlib.stages import package_versions  # noqa: E402

GIB = 2**30
RUNS_ROOT = "outputs/bench_runs"  # fresh output roots of the from-scratch cases and the logs (inside outputs/, not committed)


@dataclass(frozen=True)
class Case:
    """One study run to time."""

    name: str
    params: tuple[str, ...]
    run_name: str
    output_root: str | None      # None = the params' own root (the cached case reuses it)
    fresh: bool                  # delete output_root/run_name first
    target_seconds: float
    memory_target_gib: float | None = None
    args: tuple[str, ...] = ()   # further arguments of `python -m imitlib run`


CASES = {
    "smoke": Case("smoke", ("params/smoke.yaml",), "bench_smoke", f"{RUNS_ROOT}/smoke", True, 300.0),
    "cached": Case("cached", ("params/default.yaml",), "default", None, False, 60.0),
    "cached_execute": Case("cached_execute", ("params/default.yaml",), "default", None, False, 60.0,
                           args=("--execute-all",)),
    # the study's own run: outputs/default is rebuilt from nothing (its committed figures/tables are regenerated)
    "full": Case("full", ("params/default.yaml",), "default", None, True, 900.0, 8.0),
}


def command_of(case: Case, python: str = sys.executable) -> list[str]:
    """The ``python -m imitlib run`` command line of a case."""
    command = [python, "-m", "imitlib", "run", *case.params, "--run-name", case.run_name]
    if case.output_root is not None:
        command += ["--set", f"run.output_root={case.output_root}"]
    return command + list(case.args)


def run_dir_of(case: Case, project_root: Path = PROJECT_ROOT) -> Path:
    return project_root / (case.output_root or "outputs") / case.run_name


class TreeMemory:
    """Polls the resident memory of a process and all its descendants (psutil) in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_total = 0
        self.peak_single = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="tree-memory", daemon=True)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _poll(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            try:
                processes = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for process in processes:
                try:
                    rss = process.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                total += rss
                self.peak_single = max(self.peak_single, rss)
            self.peak_total = max(self.peak_total, total)
            self.samples += 1
            self._stop.wait(self.interval_s)


def notebook_timings(notebook_dir: Path) -> dict[str, dict[str, Any]]:
    """Per executed notebook: papermill's duration, start and end, and its slowest cells."""
    timings: dict[str, dict[str, Any]] = {}
    for path in sorted(notebook_dir.glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        meta = notebook.get("metadata", {}).get("papermill", {})
        cells = [(cell.get("metadata", {}).get("papermill", {}).get("duration") or 0.0, index)
                 for index, cell in enumerate(notebook.get("cells", [])) if cell.get("cell_type") == "code"]
        slowest = sorted(cells, reverse=True)[:3]
        timings[path.stem] = {"seconds": meta.get("duration"), "start": meta.get("start_time"),
                              "end": meta.get("end_time"), "exception": meta.get("exception"),
                              "slowest_cells": [{"cell": index, "seconds": seconds} for seconds, index in slowest]}
    return timings


def stages_built_since(run_dir: Path, since: float) -> list[str]:
    """Stage folders whose completion marker was written after ``since`` (rebuilt, not reused)."""
    built = []
    for marker in (run_dir / "stages").glob("**/COMPLETE"):
        if marker.stat().st_mtime >= since:
            built.append(str(marker.parent.relative_to(run_dir / "stages")))
    return sorted(built)


def stage_profile(run_dir: Path) -> dict[str, Any]:
    """The profile of a run folder's stage builds (:func:`profile_study.profile`), or why there is none."""
    try:
        return profile_study.profile(run_dir)
    except (FileNotFoundError, ValueError) as error:
        return {"error": str(error)}


def measure(case: Case, project_root: Path = PROJECT_ROOT, python: str = sys.executable,
            extra_args: list[str] | None = None, results_dir: Path | None = None,
            timeout_s: float | None = None) -> dict[str, Any]:
    """Run one case as a subprocess, time it, poll its memory and write ``study_<case>.json``."""
    run_dir = run_dir_of(case, project_root)
    if case.fresh:
        for cached in ("stages", "notebooks", "cache"):  # everything built, the teacher response cache too; committed figures and tables get rewritten
            if (run_dir / cached).exists():
                shutil.rmtree(run_dir / cached)
    command = command_of(case, python) + list(extra_args or [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started_wall = time.time()
    started = time.perf_counter()
    log_path = project_root / RUNS_ROOT / f"study_{case.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=project_root, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            import psutil  # noqa: F401

            poller: TreeMemory | None = TreeMemory(process.pid)
        except ImportError:
            poller = None
        if poller is not None:
            with poller:
                returncode = process.wait(timeout=timeout_s)
        else:
            returncode = process.wait(timeout=timeout_s)
    seconds = time.perf_counter() - started
    children_maxrss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    notebooks = notebook_timings(run_dir / "notebooks")
    log_text = log_path.read_text(errors="replace")
    for name, timing in notebooks.items():
        # an up-to-date notebook is not executed: its papermill times are from an earlier run
        timing["reused"] = f"] {name} is up to date" in log_text
        if timing["reused"]:
            timing["seconds"] = 0.0
    peak_gib = poller.peak_total / GIB if poller is not None else children_maxrss_kib / 2**20
    result: dict[str, Any] = {
        "benchmark": f"study_{case.name}",
        "command": " ".join(command),
        "returncode": returncode,
        "wall_seconds": seconds,
        "target_seconds": case.target_seconds,
        "target_met": returncode == 0 and seconds <= case.target_seconds,
        "notebooks": notebooks,
        "notebook_seconds_total": sum(n["seconds"] or 0.0 for n in notebooks.values()),
        "stages_built": stages_built_since(run_dir, started_wall),
        "memory": {
            "peak_tree_rss_gib": peak_gib,
            "method": "psutil: max over time of the summed RSS of the process tree (pages shared between "
                      "processes count in each, so an upper bound)" if poller is not None
                      else "resource.getrusage(RUSAGE_CHILDREN).ru_maxrss (largest single child)",
            "peak_single_process_rss_gib": poller.peak_single / GIB if poller is not None else None,
            "children_ru_maxrss_gib": children_maxrss_kib / 2**20,
            "samples": poller.samples if poller is not None else 0,
            "target_gib": case.memory_target_gib,
            "target_met": None if case.memory_target_gib is None else peak_gib <= case.memory_target_gib,
        },
        "profile": stage_profile(run_dir),
        "log_tail": log_text[-2000:],
        "host": machine_facts(),
        "packages": package_versions(),
    }
    write(f"study_{case.name}", result, results_dir)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", nargs="?", choices=["smoke", "cached", "cached_execute"], help="the case to run")
    parser.add_argument("--full", action="store_true", help="the full default study from scratch (15-40 min)")
    parser.add_argument("--no-report", action="store_true", help="pass --no-report (skip the HTML report)")
    options = parser.parse_args()
    if options.full == (options.case is not None):
        parser.error("give exactly one of: smoke, cached, cached_execute, --full")
    case = CASES["full" if options.full else options.case]
    result = measure(case, extra_args=["--no-report"] if options.no_report else None)
    if "error" not in result["profile"]:
        print(profile_study.format_profile(result["profile"]))
    if result["returncode"] != 0:
        raise SystemExit(f"the study run failed (exit {result['returncode']}); see {RUNS_ROOT}/study_{case.name}.log")


if __name__ == "__main__":
    main()
