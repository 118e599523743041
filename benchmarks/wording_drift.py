"""Does pretraining on more question wordings stop the convergence check's evaluation-wording drift?

World v3's convergence check (``imitlib.study.world``) failed in 5 of 10 confirm seeds while the
held-out pool wordings moved by at most 6 pts: replay-only continuations shifted recall on the
*evaluation* wordings by up to +-15 pts. That looked like the evaluation's phrasing being answered
unstably; it was the padded replay described below. ``world.pretrain_qa_extra_paraphrases`` adds up to 4 more
pretraining-only wordings per attribute (disjoint from every evaluation, tuning and pool wording).
This script compares worlds built with different settings of that knob, seed by seed, or any two
builds of the same seeds (``--out`` names the table).

The comparison in ``outputs/benchmarks/wording_drift.csv`` was built before 825a4fb, when the
convergence probe's replay rows were a quarter pad tokens; the drift it measured came from that
(``outputs/benchmarks/replay_fix.csv`` compares the same seeds before and after the fix).

Build the worlds first, on design seeds only (never confirmatory seeds), e.g.::

    python -m imitlib run params/default.yaml --only 01_world --no-report \\
        --set world.pretrain_qa_extra_paraphrases=4 --set "run.seeds=[3,4,5,6,7,8]" --run-name wd4

then::

    python benchmarks/wording_drift.py extra=0:outputs/wd0 extra=4:outputs/wd4

Writes ``<results-dir>/wording_drift.csv`` (one row per setting x seed x base) and prints, per
setting, how many seeds meet the convergence target (as ``tables/01_world_checks.csv`` judges it: every
base's mean replay gain on both the evaluation and the pool wordings <= ``world.convergence_max_gain``)
and the teacher-margin target (teacher chat accuracy >= every base's few-shot recall + the margin).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imitlib.config import load  # noqa: E402
from imitlib.stages import atomic_path  # noqa: E402

TABLE = Path("tables") / "01_world_calibration_by_seed.csv"


def load_setting(label: str, run_dir: Path) -> pd.DataFrame:
    path = run_dir / TABLE
    if not path.is_file():
        raise SystemExit(f"{label}: {path} not found; build the world stage first (see this script's docstring)")
    table = pd.read_csv(path)
    missing = {"seed", "model", "role", "fewshot_recall", "replay_gain", "pool_replay_gain", "chat_qa_accuracy"} - set(table.columns)
    if missing:
        raise SystemExit(f"{label}: {path} lacks columns {sorted(missing)}")
    return table


def per_base_rows(label: str, table: pd.DataFrame, convergence_target: float, margin_target: float) -> list[dict]:
    rows = []
    for seed, world in table.groupby("seed"):
        bases = world[world.role == "base"]
        teacher = world[world.role == "teacher"]
        if teacher.empty or bases.empty:
            raise SystemExit(f"{label}: seed {seed} lacks a teacher or base rows")
        teacher_acc = float(teacher.chat_qa_accuracy.iloc[0])
        margin = teacher_acc - float(bases.fewshot_recall.max())
        for _, b in bases.iterrows():
            rows.append(
                {
                    "setting": label,
                    "seed": int(seed),
                    "base": b.model,
                    "fewshot_recall": float(b.fewshot_recall),
                    "eval_wording_gain": float(b.replay_gain),
                    "pool_wording_gain": float(b.pool_replay_gain),
                    "replay_gains": b.get("replay_gains"),
                    "convergence_rounds": b.get("convergence_rounds"),
                    "pretrain_rows": b.get("pretrain_rows"),
                    # the world's own rule (imitlib.world.report): both wordings within the target
                    "base_converged": float(b.replay_gain) <= convergence_target
                    and (pd.isna(b.pool_replay_gain) or float(b.pool_replay_gain) <= convergence_target),
                    "teacher_chat_accuracy": teacher_acc,
                    "teacher_margin": round(margin, 1),
                    "teacher_margin_met": margin >= margin_target,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+", help="LABEL:RUN_DIR pairs, e.g. extra=4:outputs/wd4")
    ap.add_argument("--convergence-target", type=float, default=load(["params/default.yaml"]).world.convergence_max_gain,
                    help="max mean replay gain, pts (default: the world's world.convergence_max_gain)")
    ap.add_argument("--margin-target", type=float, default=20.0, help="teacher margin over the best base, pts")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "outputs" / "benchmarks")
    ap.add_argument("--out", default="wording_drift.csv", help="file name of the table in --results-dir")
    args = ap.parse_args(argv)

    rows: list[dict] = []
    for spec in args.settings:
        label, sep, run_dir = spec.partition(":")
        if not sep or not label or not run_dir:
            raise SystemExit(f"setting {spec!r}: expected LABEL:RUN_DIR")
        rows += per_base_rows(label, load_setting(label, Path(run_dir)), args.convergence_target, args.margin_target)
    out = pd.DataFrame(rows)
    dest = args.results_dir / args.out
    with atomic_path(dest) as tmp:
        out.to_csv(tmp, index=False)

    for label, s in out.groupby("setting", sort=False):
        by_seed = s.groupby("seed").agg(
            converged=("base_converged", "all"),
            margin_met=("teacher_margin_met", "first"),
            worst_gain=("eval_wording_gain", "max"),
            worst_pool=("pool_wording_gain", "max"),
        )
        n = len(by_seed)
        print(
            f"{label}: convergence met in {int(by_seed.converged.sum())}/{n} seeds, teacher margin met in "
            f"{int(by_seed.margin_met.sum())}/{n}; |eval-wording gain| mean {s.eval_wording_gain.abs().mean():.1f}, "
            f"max {s.eval_wording_gain.abs().max():.1f}; |pool-wording gain| mean {s.pool_wording_gain.abs().mean():.1f}, "
            f"max {s.pool_wording_gain.abs().max():.1f}; few-shot recall mean {s.fewshot_recall.mean():.1f}"
        )
        for seed, r in by_seed.iterrows():
            print(f"  seed {seed}: converged={bool(r.converged)} (worst eval gain {r.worst_gain:+.1f}, pool {r.worst_pool:+.1f}), margin met={bool(r.margin_met)}")
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
