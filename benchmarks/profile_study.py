"""Profile of a finished study run: wall time per stage and per kind of work, read from its stage manifests.

Every stage and every unit of a stage (a sweep run, one model's answers) writes ``manifest.json`` with
its build's start, end and seconds and an ``info`` dict; the stages time their parts there
(``info.timings``: 01 per step: each base's pretraining and its replay-only continuation, the teacher's
pretraining and chat tuning, calibration; 02 the teacher's start and
each generation call; 04 units model load, lm-eval and chat generation; 04 rating and the LLM judge's
start and replies; 05 the analysis; a 03 unit's ``info.seconds`` is its training loop). Each timed part
is mapped to a kind of work
(:data:`LABEL_KINDS`; a label it does not know is ``other``), and the rest of a build's wall time is
``untimed`` (loading inputs, writing files), except in the stages whose whole build is one kind
(:data:`REMAINDER_KINDS`).

Which folders are the run's: a run folder keeps every version of a stage it has built (a code or
params change gives a new key). The profile follows the newest chain: the newest version of the
last stage present, per seed, then the exact upstream versions its manifest names; a stage's units are
those whose upstream keys are the stage's (or the chosen units of an upstream stage), the newest one
per unit finished before the stage's build started (where a seed's stage build is missing, e.g. an
interrupted run, its units are those of the seed's chain so far, finished before its next stage).

Three totals:

- ``work``: the sum over every stage, unit and seed (what a single worker would spend);
- ``elapsed``: the length of the union of the build intervals (seeds built by parallel workers overlap);
- ``critical path``: per stage its slowest seed, summed over the stages (the runner waits for every seed
  of a stage before it starts the next): the elapsed time with one worker per seed and nothing else in
  the way; ``slowest seed chain``: the slowest seed's stages plus the run-level ones (without those waits).

Time outside stage builds (notebook kernels starting, imports, figures) is not in any manifest; where
the run folder has executed notebooks, their papermill times are listed beside it.

Usage: python benchmarks/profile_study.py outputs/<run> [--results-dir DIR]
Prints the tables and writes outputs/benchmarks/profile_<run>.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from harness import RESULTS_DIR, machine_facts  # noqa: E402

from imitlib import dag  # noqa: E402
from imitlib.stages import COMPLETE_MARKER, MANIFEST, atomic_write_json  # noqa: E402

# (label pattern, kind): the first match names the kind of a timed part
LABEL_KINDS: tuple[tuple[str, str], ...] = (
    (r"^teacher pretrain$", "pretraining"),
    (r"^pretrain ", "pretraining"),
    (r"^teacher chat$", "teacher chat tuning"),
    (r"^teacher$", "teacher pretraining + chat tuning"),  # older worlds timed the two as one step
    (r"^calibration$", "calibration"),
    (r"^replay-only ", "calibration"),  # a base's replay-only continuation: the control's calibration
    (r"^(knowledge base, tasks, tokenizer|pretraining data|real models and items)$", "world data"),
    (r"^teacher (start|generation\b)", "teacher generation"),
    (r"^training loop$", "finetuning"),
    (r"^model load$", "model loading"),
    (r"^evaluation generation$", "evaluation generation"),
    (r"^lm-eval$", "lm-eval"),
    (r"^rating$", "rating"),
    (r"^judge (start|replies)$", "LLM judge"),
    (r"^analysis$", "analysis"),
)
# stage-level builds whose untimed rest is one kind of work; every other rest is "untimed"
REMAINDER_KINDS = {"05_analysis": "analysis"}
KIND_ORDER = ("world data", "pretraining", "teacher chat tuning", "teacher pretraining + chat tuning", "calibration", "teacher generation", "finetuning",
              "model loading", "evaluation generation", "lm-eval", "rating", "LLM judge", "analysis", "other", "untimed")
SEED_PART = re.compile(r"^seed(\d+)$")


def kind_of(label: str) -> str:
    """The kind of work of a timed part (``other`` for a label :data:`LABEL_KINDS` does not know)."""
    for pattern, kind in LABEL_KINDS:
        if re.search(pattern, label):
            return kind
    return "other"


@dataclass
class Build:
    """One completed stage or unit folder, from its manifest."""

    stage: str                 # "03_train"
    seed: int | None           # None for a run-level stage
    unit: str | None           # "base-m/broad/1000", "models/s0_base-m"; None for the stage itself
    hash: str
    upstream: list[str]
    started: float
    finished: float
    seconds: float
    info: dict[str, Any]
    path: Path
    parts: list[tuple[str, str, float]] = field(default_factory=list)  # (label, kind, seconds)

    @property
    def name(self) -> str:
        return "/".join([self.stage, *([f"seed{self.seed}"] if self.seed is not None else []),
                         *([self.unit] if self.unit else [])])

    @property
    def wall(self) -> float:
        """Seconds of the build, and of timed work that ran just before it (05: the analysis, then its store)."""
        return max(self.seconds, sum(s for _, _, s in self.parts))

    @property
    def interval(self) -> tuple[float, float]:
        return self.finished - self.wall, self.finished


def read_build(manifest_path: Path) -> Build:
    """A build from its manifest (error naming the file when a key is missing or malformed)."""
    try:
        manifest = json.loads(manifest_path.read_text())
        name = manifest["stage"]
        timings = manifest["timings"]
        started, finished, seconds = float(timings["started"]), float(timings["finished"]), float(timings["seconds"])
        upstream = [str(u) for u in manifest.get("upstream", [])]
        key = str(manifest["hash"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{manifest_path}: not a stage manifest with stage, hash and timings "
                         f"(started, finished, seconds): {error!r}") from None
    info = manifest.get("info") or {}
    if not isinstance(info, dict):
        raise ValueError(f"{manifest_path}: 'info' is a {type(info).__name__}, not an object")
    pieces = name.split("/")
    seed, rest = None, pieces[1:]
    if rest and SEED_PART.match(rest[0]):
        seed, rest = int(SEED_PART.match(rest[0]).group(1)), rest[1:]
    build = Build(pieces[0], seed, "/".join(rest) or None, key, upstream, started, finished, seconds, info,
                  manifest_path.parent)
    build.parts = timed_parts(build, manifest_path)
    return build


def timed_parts(build: Build, manifest_path: Path) -> list[tuple[str, str, float]]:
    """(label, kind, seconds) of the build's timed parts, then its untimed rest."""
    labelled: dict[str, float] = {}
    timings = build.info.get("timings")
    if timings is not None:
        if not isinstance(timings, dict):
            raise ValueError(f"{manifest_path}: info.timings is a {type(timings).__name__}, not an object")
        for label, value in timings.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"{manifest_path}: info.timings[{label!r}] = {value!r} is not a number of seconds")
            labelled[str(label)] = float(value)
    elif build.stage == "03_train" and build.unit is not None and isinstance(build.info.get("seconds"), (int, float)):
        labelled["training loop"] = float(build.info["seconds"])  # a sweep run's result: its loop's seconds
    elif build.stage == "01_world" and build.info.get("kind") == "real" and isinstance(build.info.get("seconds"), (int, float)):
        labelled["real models and items"] = float(build.info["seconds"])  # resolving pretrained models, items
    parts = [(label, kind_of(label), seconds) for label, seconds in sorted(labelled.items())]
    rest = build.seconds - sum(labelled.values())
    if rest > 1e-3:
        remainder_kind = REMAINDER_KINDS.get(build.stage, "untimed") if build.unit is None else "untimed"
        parts.append(("outside the timed parts", remainder_kind, rest))
    return parts


def read_builds(stages_dir: Path) -> list[Build]:
    """Every completed build under a run's ``stages/`` (temporary and superseded folders skipped)."""
    builds = []
    for manifest_path in sorted(stages_dir.glob(f"**/{MANIFEST}")):
        folder = manifest_path.parent
        if folder.name.endswith(".partial") or ".old-" in folder.name or not (folder / COMPLETE_MARKER).exists():
            continue
        if any(part.endswith(".partial") for part in folder.relative_to(stages_dir).parts):
            continue  # a manifest inside a partial build (e.g. a model's checkpoint)
        builds.append(read_build(manifest_path))
    return builds


def stage_names(builds: list[Build]) -> list[str]:
    """The stages present, in the study's order (unknown ones after, sorted)."""
    present = {b.stage for b in builds}
    known = [name for name in dag.order() if name in present]
    return known + sorted(present - set(known))


def select(builds: list[Build]) -> list[Build]:
    """The builds of the run's newest chain (see the module doc), stages in study order then seed, then units."""
    stage_level = [b for b in builds if b.unit is None]
    names = stage_names(builds)
    required: set[str] = set()
    chosen: dict[tuple[str, int | None], Build] = {}
    for name in reversed(names):
        seeds = sorted({b.seed for b in stage_level if b.stage == name}, key=lambda s: (s is not None, s or 0))
        for seed in seeds:
            group = [b for b in stage_level if b.stage == name and b.seed == seed]
            named = [b for b in group if b.hash in required]
            pick = max(named or group, key=lambda b: (b.finished, b.hash))
            chosen[(name, seed)] = pick
            required.update(pick.upstream)
    selected: list[Build] = []
    chosen_units: set[str] = set()
    seeds_of = sorted({b.seed for b in builds}, key=lambda s: (s is not None, s or 0))
    for position, name in enumerate(names):
        for seed in seeds_of:
            build = chosen.get((name, seed))
            if build is not None:
                allowed, cutoff = set(build.upstream), build.started
            else:  # units whose stage build is missing (interrupted, or an older layout): the seed's chain so far
                allowed = {b.hash for (n, s), b in chosen.items() if s == seed and names.index(n) < position}
                later = [b.started for (n, s), b in chosen.items() if s == seed and names.index(n) > position]
                cutoff = min(later, default=float("inf"))
            allowed |= chosen_units
            candidates: dict[str, list[Build]] = {}
            for unit in builds:
                if unit.unit is not None and unit.stage == name and unit.seed == seed and set(unit.upstream) <= allowed:
                    candidates.setdefault(unit.unit, []).append(unit)
            units = []
            for label in sorted(candidates):
                versions = candidates[label]
                before = [u for u in versions if u.finished <= cutoff + 1e-6]
                units.append(max(before or versions, key=lambda u: (u.finished, u.hash)))
            chosen_units.update(u.hash for u in units)
            selected.extend([*([build] if build is not None else []), *units])
    return selected


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of intervals."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def overlap_seconds(window: tuple[float, float], intervals: list[tuple[float, float]]) -> float:
    """Seconds of ``window`` covered by the union of ``intervals``."""
    clipped = [(max(a, window[0]), min(b, window[1])) for a, b in intervals]
    return union_seconds([(a, b) for a, b in clipped if b > a])


def _utc_timestamp(text: str) -> float:
    """Seconds since the epoch of an ISO time; one without a zone is UTC (papermill writes UTC)."""
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)).timestamp()


def notebook_times(notebook_dir: Path, intervals: list[tuple[float, float]]) -> dict[str, dict[str, Any]]:
    """Per executed notebook: papermill's seconds, and how much of it the selected stage builds cover."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(notebook_dir.glob("*.ipynb")):
        try:
            notebook = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        meta = notebook.get("metadata", {}).get("papermill", {})
        seconds = meta.get("duration")
        if not isinstance(seconds, (int, float)):
            continue
        cells = [(float(cell.get("metadata", {}).get("papermill", {}).get("duration") or 0.0), index,
                  "".join(cell.get("source", "")).strip().splitlines()[0][:70] if cell.get("source") else "")
                 for index, cell in enumerate(notebook.get("cells", [])) if cell.get("cell_type") == "code"]
        entry: dict[str, Any] = {"seconds": round(float(seconds), 3), "slowest_cells": [
            {"cell": index, "seconds": round(cell_seconds, 3), "first_line": line}
            for cell_seconds, index, line in sorted(cells, key=lambda c: (-c[0], c[1]))[:3]]}
        try:
            start, end = (_utc_timestamp(str(meta["start_time"])), _utc_timestamp(str(meta["end_time"])))
        except (KeyError, ValueError):
            start = end = None
        if start is not None and end is not None:
            inside = overlap_seconds((start, end), intervals)
            entry.update(stage_builds=round(inside, 3), outside_stage_builds=round(max(0.0, seconds - inside), 3))
        found[path.stem] = entry
    return found


def profile(run_dir: str | Path) -> dict[str, Any]:
    """The profile of a run folder (``<run>/stages/...``): per stage, per kind, per seed, totals."""
    run_dir = Path(run_dir)
    stages_dir = run_dir / "stages"
    if not stages_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no stages/ folder (not a study run folder)")
    builds = select(read_builds(stages_dir))
    if not builds:
        raise ValueError(f"{stages_dir}: no completed stage (no folder with {MANIFEST} and {COMPLETE_MARKER})")
    work = sum(b.wall for b in builds)
    intervals = [b.interval for b in builds]
    stages: dict[str, dict[str, Any]] = {}
    for name in stage_names(builds):
        of_stage = [b for b in builds if b.stage == name]
        per_seed: dict[str, float] = {}
        for b in of_stage:
            key = "run" if b.seed is None else f"seed{b.seed}"
            per_seed[key] = per_seed.get(key, 0.0) + b.wall
        kinds: dict[str, float] = {}
        for b in of_stage:
            for _, kind, seconds in b.parts:
                kinds[kind] = kinds.get(kind, 0.0) + seconds
        stages[name] = {
            "builds": len(of_stage), "units": sum(1 for b in of_stage if b.unit is not None),
            "work_seconds": round(sum(b.wall for b in of_stage), 3),
            "elapsed_seconds": round(union_seconds([b.interval for b in of_stage]), 3),
            "per_seed_seconds": {k: round(v, 3) for k, v in sorted(per_seed.items())},
            "kinds": {k: round(kinds[k], 3) for k in _kind_sorted(kinds)},
            "folders": sorted({str(b.path.relative_to(stages_dir).parent) + "/" + b.hash for b in of_stage
                               if b.unit is None}),
        }
    kinds: dict[str, dict[str, Any]] = {}
    for b in builds:
        for label, kind, seconds in b.parts:
            entry = kinds.setdefault(kind, {"seconds": 0.0, "labels": {}})
            entry["seconds"] += seconds
            entry["labels"][label] = entry["labels"].get(label, 0.0) + seconds
    kind_total = sum(k["seconds"] for k in kinds.values())
    kinds_out = {kind: {"seconds": round(kinds[kind]["seconds"], 3),
                        "share": round(kinds[kind]["seconds"] / kind_total, 4) if kind_total else 0.0,
                        "labels": {lab: round(s, 3) for lab, s in sorted(kinds[kind]["labels"].items())}}
                 for kind in _kind_sorted(kinds)}
    seeds = sorted({b.seed for b in builds if b.seed is not None})
    chain = {f"seed{s}": round(sum(b.wall for b in builds if b.seed == s), 3) for s in seeds}
    run_level = sum(b.wall for b in builds if b.seed is None)
    critical = sum(max(stage["per_seed_seconds"].values()) for stage in stages.values())  # "run" for run-level ones
    result: dict[str, Any] = {
        "benchmark": f"profile_{run_dir.name}",
        "run_dir": str(run_dir),
        "builds": len(builds),
        "totals": {
            "work_seconds": round(work, 3),
            "elapsed_seconds": round(union_seconds(intervals), 3),
            "critical_path_seconds": round(critical, 3),
            "slowest_seed_chain_seconds": round(max(chain.values(), default=0.0) + run_level, 3),
            "span_seconds": round(max(b for _, b in intervals) - min(a for a, _ in intervals), 3),
            "seed_chains_seconds": chain, "run_level_seconds": round(run_level, 3),
            "seeds_overlapped": union_seconds(intervals) < work - 1e-6,
        },
        "stages": stages,
        "kinds": kinds_out,
        "built_on": json.loads((builds[0].path / MANIFEST).read_text()).get("host"),
    }
    if (run_dir / "notebooks").is_dir():
        result["notebooks"] = notebook_times(run_dir / "notebooks", intervals)
    return result


def _kind_sorted(kinds: dict[str, Any]) -> list[str]:
    return sorted(kinds, key=lambda k: (KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER), k))


def format_profile(result: dict[str, Any]) -> str:
    """The profile as plain-text tables."""
    totals = result["totals"]
    lines = [f"profile of {result['run_dir']} ({result['builds']} stage and unit builds)", "",
             f"{'stage':<20}{'builds':>7}{'work s':>10}{'elapsed s':>11}{'untimed':>9}  per seed (s)"]
    for name, stage in result["stages"].items():
        seeds = ", ".join(f"{k} {v:.1f}" for k, v in stage["per_seed_seconds"].items())
        untimed = stage["kinds"].get("untimed", 0.0) / stage["work_seconds"] if stage["work_seconds"] else 0.0
        lines.append(f"{name:<20}{stage['builds']:>7}{stage['work_seconds']:>10.1f}{stage['elapsed_seconds']:>11.1f}"
                     f"{untimed:>9.0%}  {seeds}")
    lines += [f"{'total':<20}{result['builds']:>7}{totals['work_seconds']:>10.1f}{totals['elapsed_seconds']:>11.1f}",
              "", f"critical path {totals['critical_path_seconds']:.1f} s (each stage's slowest seed); slowest seed "
              f"chain {totals['slowest_seed_chain_seconds']:.1f} s; span {totals['span_seconds']:.1f} s from the first "
              f"build's start to the last one's end (gaps: notebooks, loading)", "", f"{'kind of work':<34}{'seconds':>10}{'share':>8}  stages"]
    for kind, entry in result["kinds"].items():
        where = [name for name, stage in result["stages"].items() if kind in stage["kinds"]]
        lines.append(f"{kind:<34}{entry['seconds']:>10.1f}{entry['share']:>8.1%}  {', '.join(where)}")
    if result.get("notebooks"):
        lines += ["", f"{'notebook':<22}{'seconds':>10}{'in builds':>11}{'outside':>9}  slowest cell"]
        for name, entry in result["notebooks"].items():
            inside, outside = entry.get("stage_builds"), entry.get("outside_stage_builds")
            top = entry["slowest_cells"][0] if entry["slowest_cells"] else None
            lines.append(f"{name:<22}{entry['seconds']:>10.1f}"
                         f"{'' if inside is None else f'{inside:.1f}':>11}{'' if outside is None else f'{outside:.1f}':>9}"
                         + (f"  {top['seconds']:.1f} s: {top['first_line']}" if top else ""))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder (holds stages/), e.g. outputs/smoke")
    parser.add_argument("--results-dir", type=Path, default=None, help="where profile_<run>.json goes "
                        "(default outputs/benchmarks)")
    options = parser.parse_args()
    result = profile(options.run_dir)
    result["profiled_on"] = machine_facts()
    print(format_profile(result))
    path = Path(options.results_dir or RESULTS_DIR) / f"{result['benchmark']}.json"
    atomic_write_json(path, result)
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
