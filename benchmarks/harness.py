"""Measurement harness for the benchmarks: warm-up, alternating repeats, min/median/max, JSON out.

Targets are checked here and reported, never asserted in the test suite (timings on a shared 2-core
machine are noisy).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from imitlib.config import PROJECT_ROOT
from imitlib.stages import atomic_write_json, package_versions

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


def compare(
    name: str,
    ours: tuple[str, Callable[[], float]],
    baseline: tuple[str, Callable[[], float]],
    units: str,
    target_ratio: float,
    repeats: int = 5,
    notes: str = "",
) -> dict:
    """Measure two sides alternately after one warm-up each; ratio of medians against a target."""
    ours_timing, base_timing = Timing(ours[0], units), Timing(baseline[0], units)
    ours[1]()
    baseline[1]()
    for _ in range(repeats):
        ours_timing.rates.append(measure_rate(ours[1]))
        base_timing.rates.append(measure_rate(baseline[1]))
    ratio = ours_timing.summary["median"] / base_timing.summary["median"]
    result = {
        "benchmark": name,
        "units": units,
        "ours": {"name": ours_timing.name, **ours_timing.summary, "all": ours_timing.rates},
        "baseline": {"name": base_timing.name, **base_timing.summary, "all": base_timing.rates},
        "ratio_of_medians": ratio,
        "target_ratio": target_ratio,
        "target_met": ratio >= target_ratio,
        "repeats": repeats,
        "notes": notes,
        "host": {"platform": platform.platform(), "python": platform.python_version()},
        "packages": package_versions(),
    }
    write(name, result)
    return result


def write(name: str, result: dict) -> Path:
    path = RESULTS_DIR / f"{name}.json"
    atomic_write_json(path, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("packages", "host")}, indent=1, default=str))
    return path


def as_dict(obj) -> dict:
    return asdict(obj)
