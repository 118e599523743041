"""Measurement harness for the benchmarks: warm-up, alternating repeats, min/median/max, JSON out.

Targets are checked here and reported, never asserted in the test suite (timings on a shared 2-core
machine are noisy).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from imitlib.config import PROJECT_ROOT
from imitlib.stages import atomic_write_json, git_sha, package_versions

RESULTS_DIR = PROJECT_ROOT / "outputs" / "benchmarks"


@dataclass
class Timing:
    """Repeated measurements of one side of a comparison (a rate: units per second)."""

    name: str
    units: str
    rates: list[float] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, float]:
        return {"min": min(self.rates), "median": statistics.median(self.rates), "max": max(self.rates)}


def measure_rate(work: Callable[[], float]) -> float:
    """Run ``work`` (which returns the units it processed) and return units per second."""
    started = time.perf_counter()
    units = work()
    return units / (time.perf_counter() - started)


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_facts() -> dict[str, Any]:
    """The machine a result was measured on: CPU, cores usable, memory, load, torch threads."""
    facts: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                             "cpu_count": os.cpu_count()}
    try:
        facts["cores_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                facts["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    try:
        facts["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        import torch

        facts["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    facts["git_sha"] = git_sha()
    return facts


def compare(
    name: str,
    ours: tuple[str, Callable[[], float]],
    baseline: tuple[str, Callable[[], float]],
    units: str,
    target_ratio: float,
    repeats: int = 5,
    notes: str = "",
    extra: dict[str, Any] | None = None,
    results_dir: Path | None = None,
) -> dict:
    """Measure two sides alternately after one warm-up each; ratio of medians against a target.

    Args:
        name: result name (``<results_dir>/<name>.json``).
        ours, baseline: ``(label, work)``; ``work()`` does the job once and returns the units done.
        units: what the rate counts, e.g. ``"supervised tokens/s"``.
        target_ratio: the ratio of medians the issue asks for.
        repeats: measured runs of each side (after one warm-up run each).
        notes: what was measured, in words.
        extra: more facts to store (read when the result is written, so work functions may fill it).
        results_dir: where to write (default ``outputs/benchmarks``).
    """
    ours_timing, base_timing = Timing(ours[0], units), Timing(baseline[0], units)
    load_before = _load_average()
    ours[1]()
    baseline[1]()
    for _ in range(repeats):
        ours_timing.rates.append(measure_rate(ours[1]))
        base_timing.rates.append(measure_rate(baseline[1]))
    ratio = ours_timing.summary["median"] / base_timing.summary["median"]
    # each repeat measures both sides back to back, so a pair's ratio is robust to load that drifts
    pair_ratios = [a / b for a, b in zip(ours_timing.rates, base_timing.rates)]
    result = {
        "benchmark": name,
        "units": units,
        "ours": {"name": ours_timing.name, **ours_timing.summary, "all": ours_timing.rates},
        "baseline": {"name": base_timing.name, **base_timing.summary, "all": base_timing.rates},
        "ratio_of_medians": ratio,
        "target_ratio": target_ratio,
        "target_met": ratio >= target_ratio,
        "pair_ratios": {"min": min(pair_ratios), "median": statistics.median(pair_ratios), "max": max(pair_ratios),
                        "all": pair_ratios},
        "repeats": repeats,
        "load_average_1min": {"before": load_before, "after": _load_average()},
        "notes": notes,
        **(extra or {}),
        "host": machine_facts(),
        "packages": package_versions(),
    }
    write(name, result, results_dir)
    return result


def write(name: str, result: dict, results_dir: Path | None = None) -> Path:
    """Write ``result`` atomically to ``<results_dir>/<name>.json`` and print it (without host/packages)."""
    path = Path(results_dir or RESULTS_DIR) / f"{name}.json"
    atomic_write_json(path, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("packages", "host")}, indent=1, default=str))
    return path


def as_dict(obj) -> dict:
    return asdict(obj)
