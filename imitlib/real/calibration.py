"""The real world's calibration: the teacher and every student benchmarked before any imitation.

Run by ``01_world`` when ``world.real.calibrate`` is set, with the ``evaluate`` settings' lm-eval tasks,
so ``04_evaluate`` reuses each output for the same model and tasks (the calibration numbers are the
evaluation's own). This module is declared in :data:`imitlib.dag.STAGES` (``real_modules`` of
``01_world``): its code is in the real world's key and not in the miniature world's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from imitlib.config import Config
from imitlib.real.world import CALIBRATION, REAL_FAMILIES, TEACHER
from imitlib.stages import log


def _work_items(work: Path) -> dict[str, list[dict[str, Any]]]:
    """Both splits of every family written into ``work/tasks`` (the items 04 evaluates on)."""
    from imitlib.world.tasks import read_task_items

    items = {}
    for family in REAL_FAMILIES:
        path = work / "tasks" / f"{family}.jsonl"
        if path.exists():
            rows = [*read_task_items(path, "heldout"), *read_task_items(path, "imitation")]
            if rows:
                items[family] = rows
    return items


def calibrate(work: Path, cfg: Config, info: dict[str, Any], seed: int) -> dict[str, Any]:
    """Benchmark the teacher and every student before imitation, with the ``evaluate`` settings' tasks.

    Each model's lm-eval output goes to ``calibration/<name>/`` (04 reuses it for the same model and
    tasks, so the numbers are the evaluation's own). Returns per model and family the accuracy and
    item count, the seconds per model, and per student the gap check: teacher − student at least
    ``world.real.min_teacher_gap`` on at least ``min_gap_families`` families.
    """
    from imitlib.evaluate.answers import ModelEntry, benchmark_model, loaded_model, model_dtype, write_tasks
    from imitlib.models import pick_device

    items = _work_items(work)
    device = str(pick_device(cfg.run.device))
    models = [(name, "base", work / "models" / name) for name in info["base_order"]]
    if info.get("teacher_dir"):
        teacher = Path(info["teacher_dir"])
        models.append((TEACHER, TEACHER, teacher if teacher.is_absolute() else work / teacher))
    rows, seconds = [], {}
    for name, role, folder in models:
        started = time.time()
        entry = ModelEntry(f"s{seed}/{name}", str(folder), role, name, int(info["params"][name]), seed=seed)
        out = work / CALIBRATION / name
        log(f"[01_world seed {seed}] calibration: benchmarking {name} before imitation")
        with loaded_model(folder, device, model_dtype(entry, cfg.evaluate)) as loaded:
            tasks = write_tasks(items, cfg.evaluate, out / "lm_eval_tasks")
            _, per_sample = benchmark_model(entry, tasks, cfg.evaluate, out, device=device, loaded=loaded)
        for family, group in per_sample.groupby("task", sort=True):
            rows.append({"model": name, "role": role, "params": int(info["params"][name]), "family": str(family),
                         "correct": int(group["correct"].fillna(0).sum()), "n": int(len(group))})
        seconds[name] = round(time.time() - started, 1)
    accuracy = {(r["model"], r["family"]): r["correct"] / r["n"] for r in rows if r["n"]}
    gaps = {}
    real = cfg.world.real
    for name in info["base_order"]:
        per_family = {f: round(100 * (accuracy[(TEACHER, f)] - accuracy[(name, f)]), 1)
                      for (m, f) in accuracy if m == TEACHER and (name, f) in accuracy}
        wide = [f for f, gap in per_family.items() if gap >= 100 * real.min_teacher_gap]
        gaps[name] = {"gap_pts": per_family, "families_with_gap": wide, "met": len(wide) >= real.min_gap_families}
    return {"rows": rows, "seconds": seconds, "gaps": gaps, "min_teacher_gap": real.min_teacher_gap,
            "min_gap_families": real.min_gap_families}
