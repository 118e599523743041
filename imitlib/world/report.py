"""Tables, calibration checks and figures of the ``01_world`` notebook (computed from saved files)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from imitlib.config import Config
from imitlib.world.kb import ATTRIBUTES
from imitlib.study.world import TEACHER, World, load_world

Z95 = 1.959963984540054


def wilson_interval(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (0..1)."""
    if total == 0:
        return (float("nan"), float("nan"))
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def load_worlds(cfg: Config) -> list[World]:
    """The built worlds of every seed of the run."""
    return [load_world(cfg, seed) for seed in cfg.run.seeds]


def _is_real(world: Any) -> bool:
    return getattr(world, "kind", "miniature") == "real"


NOT_COMPUTABLE_REAL = ("not computable on the real track without world.real.calibrate: its models are pretrained "
                       "elsewhere, so the only calibration is the benchmark gap between teacher and students before "
                       "imitation, and it was not measured in this run")


def real_calibration(worlds: list[Any], pooled: bool = False) -> pd.DataFrame:
    """Real track: benchmark accuracy (%) of the teacher and every student before imitation, per seed
    (or pooled over seeds), model and family, with 95% Wilson intervals; empty when not measured."""
    rows = [{"seed": w.seed, **row} for w in worlds for row in w.info.get("calibration", {}).get("rows", [])]
    columns = ["model", "role", "params", "family"]
    if not rows:
        return pd.DataFrame(columns=(columns if pooled else ["seed", *columns]) + ["accuracy", "n"])
    frame = pd.DataFrame(rows)
    keys = columns if pooled else ["seed", *columns]
    frame = frame.groupby(keys, sort=False, as_index=False)[["correct", "n"]].sum()
    frame["accuracy"] = (100 * frame["correct"] / frame["n"]).round(1)
    bounds = [wilson_interval(int(k), int(n)) for k, n in zip(frame["correct"], frame["n"])]
    frame["accuracy_low"] = [round(100 * low, 1) for low, _ in bounds]
    frame["accuracy_high"] = [round(100 * high, 1) for _, high in bounds]
    if pooled:
        frame["seeds"] = len(worlds)
    return frame


def real_calibration_checks(worlds: list[Any]) -> pd.DataFrame:
    """Real track, per seed and student: teacher − student accuracy before imitation is at least
    ``min_teacher_gap`` on at least ``min_gap_families`` benchmark families."""
    checks = []
    for world in worlds:
        calibration = world.info.get("calibration")
        if not calibration:
            checks.append({"seed": world.seed, "target": "teacher above every student before imitation",
                           "measured": NOT_COMPUTABLE_REAL, "met": None})
            continue
        gap, families = 100 * calibration["min_teacher_gap"], calibration["min_gap_families"]
        for name, result in calibration["gaps"].items():
            measured = ", ".join(f"{family} {value:+.1f}" for family, value in sorted(result["gap_pts"].items()))
            checks.append({"seed": world.seed,
                           "target": f"teacher - {name} >= {gap:.0f} pts on >= {families} benchmark families "
                                     "(before imitation)",
                           "measured": f"{measured} pts", "met": bool(result["met"])})
    return pd.DataFrame(checks)


def kb_table(world: World, rows: int | None = None) -> pd.DataFrame:
    """The knowledge base as a table (one row per individual), most popular first.

    On the real track (no knowledge base) the resolved models instead: role, spec, folder, parameters.
    """
    if _is_real(world):
        from imitlib.real.world import model_table

        return model_table([world])
    kb = world.kb
    frame = pd.DataFrame([{"name": n, "split": kb.split[n], "popularity": round(kb.popularity[n], 4),
                           **{a: kb.individuals[n][a] for a in ATTRIBUTES}} for n in kb.names])
    frame = frame.sort_values("popularity", ascending=False).reset_index(drop=True)
    return frame.head(rows) if rows else frame


def corpus_table(world: World, per_kind: int = 2) -> pd.DataFrame:
    """A few pretraining documents of each kind (real track: items per family and split instead)."""
    if _is_real(world):
        from imitlib.real.world import item_count_table

        return item_count_table([world])
    frame = pd.DataFrame(world.corpus_examples)
    return frame.groupby("kind", sort=True).head(per_kind).sort_values("kind").reset_index(drop=True)


def calibration_rows(worlds: list[World]) -> pd.DataFrame:
    """Per-seed, per-model counts (few-shot recall, chat accuracy, style markers)."""
    return pd.DataFrame([row for world in worlds for row in world.calibration["rows"]])


def calibration_table(worlds: list[World]) -> pd.DataFrame:
    """Per-model calibration pooled over seeds, with 95% Wilson intervals (proportions in %).

    Empty on the real track (see :data:`NOT_COMPUTABLE_REAL`).
    """
    if any(_is_real(w) for w in worlds):
        return real_calibration(worlds, pooled=True)
    rows = calibration_rows(worlds)
    out = []
    for (model, role), group in rows.groupby(["model", "role"], sort=False):
        record: dict[str, Any] = {"model": model, "role": role, "params": int(group["params"].mean()),
                                  "seeds": len(group)}
        for label, hits, total in (("fewshot_recall", "fewshot_correct", "fewshot_n"),
                                   ("chat_qa_accuracy", "chat_qa_correct", "chat_qa_n"),
                                   ("style_rate", "styled", "chat_n")):
            k, n = int(group[hits].sum()), int(group[total].sum())
            low, high = wilson_interval(k, n)
            record[label] = 100 * k / n if n else float("nan")
            record[f"{label}_low"] = 100 * low
            record[f"{label}_high"] = 100 * high
            record[f"{label}_n"] = n
        record["fewshot_recall_per_seed"] = [round(100 * c / n, 1) for c, n in
                                             zip(group["fewshot_correct"], group["fewshot_n"])]
        out.append(record)
    frame = pd.DataFrame(out)
    frame["_teacher"] = frame["role"] == TEACHER
    return frame.sort_values(["_teacher", "params"]).drop(columns="_teacher").reset_index(drop=True)


def stage_wall_seconds(stage_dirs: list[Path]) -> float:
    """Wall time spent building these stage folders: the union of their build intervals (from each
    manifest's timings), so seeds built at once in parallel processes count once."""
    intervals = []
    for folder in stage_dirs:
        timings = json.loads((Path(folder) / "manifest.json").read_text())["timings"]
        intervals.append((float(timings["started"]), float(timings["finished"])))
    total, end = 0.0, float("-inf")
    for start, finish in sorted(intervals):
        if finish > end:
            total += finish - max(start, end)
            end = finish
    return total


def seed_calibration(worlds: list[World]) -> pd.DataFrame:
    """Per seed and model: parameters, few-shot recall (%), recall after the replay-only continuation
    (bases) and its gain, chat accuracy on evaluation facts (all, tuned, untuned individuals), style
    rates, and for the teacher its second-sample difference and its tuning data's style rates."""
    if any(_is_real(w) for w in worlds):
        return real_calibration(worlds)
    rows = calibration_rows(worlds)

    def pct(hits: str, total: str) -> pd.Series:
        if hits not in rows or total not in rows:
            return pd.Series(float("nan"), index=rows.index)
        return (100 * rows[hits] / rows[total].where(rows[total] > 0)).round(1)

    out = rows[["seed", "model", "role", "params"]].copy()
    out["fewshot_recall"] = pct("fewshot_correct", "fewshot_n")
    out["fewshot_after_replay"] = pct("fewshot_replay_correct", "fewshot_n")
    out["replay_gain"] = (out["fewshot_after_replay"] - out["fewshot_recall"]).round(1)
    out["teacher_fewshot_before_chat"] = pct("fewshot_pretrained_correct", "fewshot_n")
    out["chat_qa_accuracy"] = pct("chat_qa_correct", "chat_qa_n")
    out["chat_qa_tuned_individuals"] = pct("chat_qa_tuning_correct", "chat_qa_tuning_n")
    out["chat_qa_untuned_individuals"] = pct("chat_qa_untuned_correct", "chat_qa_untuned_n")
    out["styled"] = pct("styled", "chat_n")
    out["lists"] = pct("marker_bullets", "chat_n")
    out["second_sample_differs"] = pct("second_differs", "second_differs_n")
    for column in ("tuning_list_share", "tuning_max_phrase_share", "tuning_max_marker_share"):
        out[column] = (100 * rows[column]).round(1) if column in rows else float("nan")
    for column in ("tuning_list_families", "tuning_max_phrase", "replay_tokens", "replay_gains", "convergence_rounds",
                   "pretrain_rows", "pool_replay_gain"):
        out[column] = rows[column] if column in rows else None
    return out.reset_index(drop=True)


def tuning_prompt_overlap(world: World) -> int:
    """How many of the teacher's tuning conversations contain an evaluation prompt's text."""
    from imitlib.world.tasks import FAMILIES

    path = world.path / "teacher_tuning.jsonl"
    texts = [" ".join(m["content"] for m in json.loads(line)["messages"])
             for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    prompts = {item["prompt"] for family in FAMILIES for item in world.tasks(family, "heldout")}
    return sum(any(p in text for p in prompts) for text in texts)


DESCRIBED_PREFIX = "described (not a target"  # every row measured for the reader, met left empty
DESCRIBED = DESCRIBED_PREFIX + "; C3 tests it): "
DESCRIBED_ONLY = DESCRIBED_PREFIX + "): "


def calibration_checks(table: pd.DataFrame, worlds: list[World], time_budget_seconds: float) -> pd.DataFrame:
    """The world's calibration targets, each measured and marked met or not, PER SEED (``seed``
    column; ``all`` for the stage's wall time and the pooled size ordering). Rows whose target text
    starts with :data:`DESCRIBED_PREFIX` are measured but not targets (``met`` empty): the base-size
    ordering of recall (:data:`DESCRIBED`: what claim C3 tests, so the world may not be required to
    have it), the teacher's margin over the best base and the arithmetic the world was built with
    (:data:`DESCRIBED_ONLY`). Real track: one row saying why none apply."""
    if any(_is_real(w) for w in worlds):
        return real_calibration_checks(worlds)
    if table.empty:
        return pd.DataFrame([{"seed": "all", "target": "world calibration", "measured": NOT_COMPUTABLE_REAL, "met": None}])
    per_seed = seed_calibration(worlds)
    checks: list[dict[str, Any]] = []
    for world in worlds:
        rows = per_seed[per_seed["seed"] == world.seed]
        bases = rows[rows["role"] == "base"].sort_values("params")
        teacher = rows[rows["role"] == TEACHER].iloc[0]
        smallest, largest = bases.iloc[0], bases.iloc[-1]

        def add(target: str, measured: str, met: bool) -> None:
            checks.append({"seed": world.seed, "target": target, "measured": measured, "met": bool(met)})

        ratio = teacher["params"] / largest["params"]
        add("teacher parameters >= 3x the largest base's",
            f"{int(teacher['params']):,} vs {largest['model']} {int(largest['params']):,} ({ratio:.2f}x)", ratio >= 3)
        rows_teacher = world.info.get("n_teacher_pretrain_rows")
        base_rows = world.info.get("base_pretrain_rows") or {}
        rows_base = max(base_rows.values()) if base_rows else world.info.get("n_pretrain_rows")
        add("teacher pretrained on the same corpus for longer",
            f"{rows_teacher} rows vs {rows_base} rows of the same stream"
            + (" (the longest-pretrained base, extensions included)" if base_rows else ""),
            bool(rows_base and rows_teacher and rows_teacher > rows_base))
        max_gain, replicates = world.settings.convergence_max_gain, world.settings.convergence_replicates

        def gain_text(r: pd.Series) -> str:
            extended = r["convergence_rounds"]
            note = f"; {r['replay_gains']}" if isinstance(r["replay_gains"], str) and "," in r["replay_gains"] else ""
            if pd.notna(extended) and extended:
                note += f"; pretrained {int(extended)} round(s) longer"
            pool = r["pool_replay_gain"]
            if pd.notna(pool):
                note += f"; pool wordings {pool:+.1f}"
            return f"{r['model']} {r['fewshot_recall']:.1f} -> {r['fewshot_after_replay']:.1f} ({r['replay_gain']:+.1f}{note})"

        add(f"bases converged: replay-only continuations (convergence_replay_tokens; mean of {replicates}) add "
            f"<= {max_gain:g} pts of few-shot recall",
            "; ".join(gain_text(r) for _, r in bases.iterrows()),
            all(pd.notna(g) and g <= max_gain for g in bases["replay_gain"])
            # the probe that decides when pretraining stops must agree (absent in worlds built before it)
            and all(pd.isna(p) or p <= max_gain for p in bases["pool_replay_gain"]))
        # described, not a target: it is what claim C3 tests, so requiring it would build C3's verdict into the world
        checks.append({"seed": world.seed, "target": DESCRIBED + "few-shot recall, largest base vs smallest base",
                       "measured": f"{smallest['model']} {smallest['fewshot_recall']:.1f}% vs {largest['model']} "
                                   f"{largest['fewshot_recall']:.1f}%", "met": None})
        # the target: the largest base (worlds v2-v6 checked every base, which a smaller base's draw
        # can fail whatever the teacher knows: design seed 1's base-s recalls 85.8%); every base is described
        margin = teacher["chat_qa_accuracy"] - largest["fewshot_recall"]
        add("teacher chat accuracy on evaluation facts >= the largest base's few-shot recall + 20 pts",
            f"{teacher['chat_qa_accuracy']:.1f}% vs {largest['model']} {largest['fewshot_recall']:.1f}% "
            f"({margin:+.1f}); tuned individuals "
            f"{teacher['chat_qa_tuned_individuals']:.1f}%, untuned {teacher['chat_qa_untuned_individuals']}",
            margin >= 20)
        best = bases.sort_values(["fewshot_recall", "params"]).iloc[-1]
        checks.append({"seed": world.seed, "target": DESCRIBED_ONLY + "teacher chat accuracy minus the best base's few-shot recall",
                       "measured": f"{teacher['chat_qa_accuracy']:.1f}% vs {best['model']} {best['fewshot_recall']:.1f}% "
                                   f"({teacher['chat_qa_accuracy'] - best['fewshot_recall']:+.1f})", "met": None})
        overlap = tuning_prompt_overlap(world)
        add("no evaluation prompt text in the teacher's tuning data", f"{overlap} tuning conversations contain one", overlap == 0)
        families = [f for f in str(teacher["tuning_list_families"] or "").split(",") if f]
        add("teacher tuning data: lists in >= 30% of answers and >= 3 families",
            f"{teacher['tuning_list_share']:.1f}% in {len(families)} families ({', '.join(families)})",
            teacher["tuning_list_share"] >= 30 and len(families) >= 3)
        add("teacher tuning data: no single marker in > 40% of answers",
            f"most common phrase {teacher['tuning_max_phrase']} {teacher['tuning_max_phrase_share']:.1f}%; "
            f"most common marker {teacher['tuning_max_marker_share']:.1f}%",
            max(teacher["tuning_max_phrase_share"], teacher["tuning_max_marker_share"]) <= 40)
        add("teacher's second sample (temperature) differs from its first in >= 50% of answers",
            f"{teacher['second_sample_differs']:.1f}%", teacher["second_sample_differs"] >= 50)
        add("base models show style markers in <= 5% of answers",
            ", ".join(f"{r['model']} {r['styled']:.1f}%" for _, r in bases.iterrows()), (bases["styled"] <= 5).all())
        arithmetic = world.info.get("numerics")
        if arithmetic:  # worlds built before run.numerics recorded only their thread count
            checks.append({"seed": world.seed, "target": DESCRIBED_ONLY + "the arithmetic the world was built with "
                           "(run.numerics; equal fingerprints compute alike)",
                           "measured": f"{arithmetic['mode']}: torch {arithmetic['aten_capability']} kernels, MKL branch "
                                       f"{arithmetic['mkl_branch']}, {arithmetic['torch_threads']} torch thread(s), "
                                       f"fingerprint {arithmetic['fingerprint']}", "met": None})
    bases = table[table["role"] == "base"].sort_values("params")
    checks.append({"seed": "all", "target": DESCRIBED + "few-shot recall by base size, smallest first (means over seeds)",
                   "measured": " / ".join(f"{r['model']} {r['fewshot_recall']:.1f}" for _, r in bases.iterrows()),
                   "met": None})
    seconds = stage_wall_seconds([w.path for w in worlds])
    checks.append({"seed": "all", "target": f"stage wall time (all {len(worlds)} seeds) <= {time_budget_seconds:.0f} s",
                   "measured": f"{seconds:.0f} s (" + ", ".join(f"seed {w.seed}: {w.info['seconds']:.0f} s" for w in worlds) + ")",
                   "met": bool(seconds <= time_budget_seconds)})
    return pd.DataFrame(checks)


def loss_curves(worlds: list[World]) -> pd.DataFrame:
    """Long table of every training run's loss curve: seed, run, step, loss (empty on the real track)."""
    rows = []
    for world in worlds:
        if _is_real(world):
            continue
        for run, record in world.training.items():
            for step, loss in record["losses"]:
                rows.append({"seed": world.seed, "run": run, "kind": record["kind"], "step": step, "loss": loss})
    return pd.DataFrame(rows)


def teacher_chats(worlds: list[World]) -> pd.DataFrame:
    """Sample teacher chats of the first seed (real track: none are stored; the imitation data shows the teacher)."""
    if _is_real(worlds[0]):
        return pd.DataFrame([{"note": "the real track's teacher answers appear in notebook 02 (imitation data)"}])
    return pd.DataFrame(worlds[0].samples["teacher_chats"])


def plot_loss_curves(curves: pd.DataFrame):
    """Figure: pretraining and teacher loss curves, one panel per run kind, seeds as line styles."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if curves.empty:
        return _note_figure("pretraining loss curves: " + NOT_COMPUTABLE_REAL)
    kinds = list(dict.fromkeys(curves["kind"]))
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        sub = curves[curves["kind"] == kind]
        sns.lineplot(data=sub, x="step", y="loss", hue="run", units="seed", estimator=None, ax=ax, lw=1)
        ax.set_title(f"{kind} loss (each line one seed)")
        ax.set_ylabel("loss per token")
    fig.tight_layout()
    return fig


def plot_calibration(table: pd.DataFrame):
    """Figure: few-shot recall per model and the teacher's chat accuracy, with 95% intervals."""
    import matplotlib.pyplot as plt

    if table.empty:
        return _note_figure("world calibration: " + NOT_COMPUTABLE_REAL)
    if "family" in table:  # real track: benchmark accuracy before imitation, per family
        import seaborn as sns

        fig, ax = plt.subplots(figsize=(8, 3.8))
        order = list(dict.fromkeys(table.sort_values("params")["model"]))
        sns.barplot(data=table, x="family", y="accuracy", hue="model", hue_order=order, errorbar=None, ax=ax)
        for patch_group, model in zip(ax.containers, order):
            rows = table[table["model"] == model].set_index("family")
            for patch, family in zip(patch_group, [t.get_text() for t in ax.get_xticklabels()]):
                if family in rows.index:
                    x = patch.get_x() + patch.get_width() / 2
                    ax.plot([x, x], [rows.loc[family, "accuracy_low"], rows.loc[family, "accuracy_high"]], color="black")
        ax.set_ylim(0, 100)
        ax.set_ylabel("% correct (95% Wilson)")
        ax.set_title("benchmarks before imitation: teacher vs students")
        fig.tight_layout()
        return fig
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    labels = [f"{m}\n({p / 1e6:.2f}M)" for m, p in zip(table["model"], table["params"])]
    x = range(len(table))
    for ax, metric, title in ((axes[0], "fewshot_recall", "few-shot recall, evaluation facts (every individual)"),
                              (axes[1], "chat_qa_accuracy", "chat answers to evaluation questions")):
        values = table[metric]
        errors = [values - table[f"{metric}_low"], table[f"{metric}_high"] - values]
        colors = ["tab:orange" if r == TEACHER else "tab:blue" for r in table["role"]]
        ax.bar(list(x), values, yerr=errors, color=colors, capsize=4)
        ax.set_xticks(list(x), labels)
        ax.set_ylim(0, 100)
        ax.set_ylabel("% correct")
        ax.set_title(title)
    fig.tight_layout()
    return fig


def _note_figure(text: str):
    """A small figure that states why there is nothing to plot."""
    import textwrap

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, textwrap.fill(text, 90), ha="center", va="center", fontsize=10)
    return fig


def task_examples(world: World) -> pd.DataFrame:
    """The first item of every task family and split (real track: a few items of each)."""
    if _is_real(world):
        from imitlib.real.world import task_table

        return task_table(world, per_family=1)
    from imitlib.world.kb import SPLITS
    from imitlib.world.tasks import FAMILIES

    rows = []
    for family in FAMILIES:
        for split in SPLITS:
            items = world.tasks(family, split)
            if items:
                item = items[0]
                rows.append({"family": family, "split": split, "n_items": len(items), "prompt": item["prompt"],
                             "answer": item["answer"], "choices": item["choices"], "gold": item["gold"]})
    return pd.DataFrame(rows)


def save_calibration(cfg: Config, table: pd.DataFrame, checks: pd.DataFrame, per_seed: pd.DataFrame | None = None) -> list:
    """Write the calibration table, the checks (per seed) and the per-seed calibration as CSV under the run's tables folder."""
    from imitlib.stages import atomic_write_text

    written = [atomic_write_text(cfg.tables_dir / "01_world_calibration.csv", table.to_csv(index=False)),
               atomic_write_text(cfg.tables_dir / "01_world_checks.csv", checks.to_csv(index=False))]
    if per_seed is not None:
        written.append(atomic_write_text(cfg.tables_dir / "01_world_calibration_by_seed.csv", per_seed.to_csv(index=False)))
    return written
