"""The claims scorecard: each of the paper's claims C1–C6 tested by a statistic computed from data.

Every claim is reduced to one statistic with a bootstrap interval and a threshold, and the verdict
follows :func:`imitlib.analysis.stats.decide`: the whole interval on the claimed side of the
threshold → reproduced; the whole interval on the other side → not reproduced; otherwise →
inconclusive; a statistic the run has no data for (one base model, no task-specific data, …) → not
computable here. The statistics (thresholds come from ``analysis.claims`` in the params):

* **C1** imitation outputs are rated as good as or better than the teacher's: share of verdicts
  >= 0.5 for the largest base model after the largest broad imitation budget; above ``c1_min_rate``.
* **C1b** the ratings saturate quickly: that share at the largest budget minus at the smallest
  non-zero budget (largest base model); below ``saturation_margin``. Needs two budgets.
* **C2** broad imitation leaves the benchmarks flat or lower: accuracy after the largest broad
  budget minus the base model's, averaged over base models and benchmark tasks; below ``flat_margin``.
* **C3** a larger base model raises the benchmarks: accuracy of the largest minus the smallest
  base model, averaged over scored tasks and over {no imitation, largest broad budget}; above
  ``c3_min_gain``. Needs two base sizes.
* **C4** task-specific imitation works for its task: factual-task accuracy after the largest
  task-specific budget minus the base model's, largest base model; above ``c4_min_gain``.
* **C5** style is copied: style-gap closed = (style score of the largest broad imitation − base) /
  (teacher's second sample − base), largest base model; above ``c5_min_style_gap_closed``.
* **C6** imitation inherits the teacher's lower toxicity: base toxicity minus toxicity after the
  largest broad budget, averaged over base models; above ``c6_min_reduction``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from imitlib.analysis.metrics import CEILING, MetricStore
from imitlib.analysis.stats import Estimate, decide
from imitlib.analysis.tables import (base_config, base_models, control_config, gap_closed, imitation_configs,
                                     largest_imitation, markdown_grid)
from imitlib.settings.analysis import ClaimSettings

# The paper's Table 2 (LLaMA 13B): base, 150M imitation tokens, second ChatGPT sample; used to put
# the paper's own value of the C5 statistic beside ours, computed with the same formula.
PAPER_TABLE2 = {
    "base": {"list": 13, "summary": 2, "overlap": 19.5, "authoritative": 57},
    "imitation": {"list": 81, "summary": 48, "overlap": 42.5, "authoritative": 98},
    "ceiling": {"list": 83, "summary": 55, "overlap": 49.2, "authoritative": 98},
}


def paper_style_gap_closed() -> float:
    """The C5 statistic on the paper's Table 2 numbers (same composite as ours)."""
    def score(column: dict) -> float:
        return (column["list"] / 100 + column["summary"] / 100 + column["overlap"] / 100 + column["authoritative"] / 100) / 4

    base, imitation, ceiling = (score(PAPER_TABLE2[k]) for k in ("base", "imitation", "ceiling"))
    return (imitation - base) / (ceiling - base)


ClaimRules = ClaimSettings


def _mean_of(store: MetricStore, estimates: list[Estimate]) -> Estimate:
    if not estimates:
        return Estimate.missing(store.bootstrap.n_resamples)

    def mean(*values):
        stacked = np.stack(np.broadcast_arrays(*[np.asarray(v, float) for v in values]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(stacked, axis=0)

    return store.bootstrap.combine(mean, *estimates)


def _diff(store: MetricStore, a: Estimate, b: Estimate) -> Estimate:
    return store.bootstrap.combine(lambda x, y: x - y, a, b)


def _scored_tasks(store: MetricStore) -> list[str]:
    """Benchmark tasks (few-shot scored), not the accuracy of chat answers."""
    return [m for m in store.metrics() if m.startswith("acc:") and not m.endswith("(chat)")]


def scorecard(store: MetricStore, rules: ClaimRules, preference_column: str = "pref_style",
              factual_task: str = "qa") -> pd.DataFrame:
    """Compute the statistic, interval and verdict of every claim.

    Args:
        store: every metric of the run.
        rules: decision thresholds.
        preference_column: the verdict column standing in for crowd raters.
        factual_task: the NQ analog (Table 1 task).

    Returns:
        One row per claim: ``claim, statement, statistic, value, lo, hi, threshold, direction,
        verdict, unit, paper, note``.
    """
    names = base_models(store)
    largest = names[-1] if names else None
    rows: list[dict] = []

    def add(claim: str, statement: str, statistic: str, est: Estimate, threshold: float, direction: str,
            unit: str, paper: str, note: str = "") -> None:
        verdict = decide(est, threshold, direction)  # type: ignore[arg-type]
        if verdict == "not computable" and not note:
            note = "no data for this statistic in this run"
        rows.append(dict(claim=claim, statement=statement, statistic=statistic, value=est.value, lo=est.lo,
                         hi=est.hi, threshold=threshold, direction=direction, verdict=verdict, unit=unit,
                         paper=paper, note=note))

    # C1 / C1b: preference
    good = f"{preference_column}:good_or_better"
    budgets = [c for c in imitation_configs(store, largest, "broad") if c[3] > 0] if largest else []
    c1 = store.get(budgets[-1], good) if budgets else Estimate.missing(store.bootstrap.n_resamples)
    add("C1", "Raters judge imitation outputs as good as or better than the teacher's",
        f"share of {preference_column} verdicts ≥ tie, {largest} + largest broad budget", c1,
        rules.c1_min_rate, "above", "%", "~70% (crowdworkers vs ChatGPT)",
        "" if budgets else "no broad imitation model")
    if len(budgets) >= 2:
        c1b = _diff(store, store.get(budgets[-1], good), store.get(budgets[0], good))
        note = f"budgets {budgets[0][3]:,} → {budgets[-1][3]:,} tokens"
    else:
        c1b, note = Estimate.missing(store.bootstrap.n_resamples), "needs two broad budgets"
    add("C1b", "Ratings saturate quickly as imitation data grows",
        "change in that share from the smallest to the largest budget", c1b,
        rules.saturation_margin, "below", "pts", "flat from ~20M tokens (Fig. 1 left)", note)

    # C2: broad imitation, benchmarks flat or lower — against the base, and (C2c) against the
    # replay-only control. With replay, every imitation run also sees extra pretraining; the control
    # sees exactly that replay and no imitation, so C2c isolates the effect of the imitation data.
    tasks = _scored_tasks(store)

    def broad_deltas(reference) -> list[Estimate]:
        deltas = []
        for name in names:
            top, ref = largest_imitation(store, name, "broad"), reference(store, name)
            if top is not None and ref is not None:
                deltas += [_diff(store, store.get(top, t), store.get(ref, t)) for t in tasks]
        return deltas

    add("C2", "More broad imitation leaves benchmarks flat or lower",
        f"accuracy(largest broad) − accuracy(base), mean over {len(names)} bases × {len(tasks)} tasks",
        _mean_of(store, broad_deltas(base_config)), rules.flat_margin, "below", "pts",
        "NQ −7 (7B), −5 (13B) pts (Table 1)", ", ".join(t.removeprefix("acc:") for t in tasks))
    controlled = broad_deltas(control_config)
    add("C2c", "… and against the replay-only control (isolates the imitation data)",
        f"accuracy(largest broad) − accuracy(replay-only control), mean over bases × {len(tasks)} tasks",
        _mean_of(store, controlled), rules.flat_margin, "below", "pts", "NQ −7 (7B), −5 (13B) pts (Table 1)",
        "" if controlled else "no replay-only control in this run")

    # C3: larger base raises benchmarks
    gains = []
    if len(names) >= 2:
        for setting in ("base", "broad"):
            small = base_config(store, names[0]) if setting == "base" else largest_imitation(store, names[0], "broad")
            big = base_config(store, names[-1]) if setting == "base" else largest_imitation(store, names[-1], "broad")
            if small is None or big is None:
                continue
            gains += [_diff(store, store.get(big, t), store.get(small, t)) for t in tasks]
    add("C3", "A larger base model raises benchmark accuracy",
        f"accuracy({names[-1] if names else '?'}) − accuracy({names[0] if names else '?'}), mean over tasks and "
        "{no imitation, largest broad}", _mean_of(store, gains), rules.c3_min_gain, "above", "pts",
        "NQ +3 (base), +5 (broad) pts, 7B → 13B (Table 1)", "" if len(names) >= 2 else "needs two base sizes")

    # C4: task-specific imitation works for its task
    metric = f"acc:{factual_task}"
    task_top = largest_imitation(store, largest, "task") if largest else None
    base_cfg = base_config(store, largest) if largest else None
    c4 = _diff(store, store.get(task_top, metric), store.get(base_cfg, metric))
    teacher_cfg = next((c for c, _ in store.estimates if c[0] == "teacher"), None)
    closed = gap_closed(store, store.get(task_top, metric), store.get(base_cfg, metric), store.get(teacher_cfg, metric))
    if not task_top:
        c4_note = "no task-specific imitation model"
    elif np.isfinite(closed.value):
        c4_note = f"gap closed {closed.format(100, 0)} %"
    else:
        c4_note = "gap closed undefined: the teacher is not above the base model on this task"
    add("C4", "Task-specific imitation improves its own task",
        f"{factual_task} accuracy({largest} + largest task budget) − accuracy({largest})", c4,
        rules.c4_min_gain, "above", "pts", "+7 pts, gap closed +64% (13B, NQ)", c4_note)

    # C4c: task-specific imitation vs the replay-only control
    control = control_config(store, largest) if largest else None
    c4c = _diff(store, store.get(task_top, metric), store.get(control, metric))
    add("C4c", "… and against the replay-only control (isolates the imitation data)",
        f"{factual_task} accuracy({largest} + largest task budget) − accuracy(replay-only control)", c4c,
        rules.c4_min_gain, "above", "pts", "+7 pts, gap closed +64% (13B, NQ)",
        "" if (task_top and control) else "no task-specific model or no replay-only control")

    # C5: style is copied
    top = largest_imitation(store, largest, "broad") if largest else None
    c5 = gap_closed(store, store.get(top, "style:score"), store.get(base_cfg, "style:score"),
                    store.get(CEILING, "style:score"))
    add("C5", "Imitation copies the teacher's style",
        f"style-gap closed by {largest} + largest broad budget (style score vs teacher's 2nd sample)", c5,
        rules.c5_min_style_gap_closed, "above", "%", f"{paper_style_gap_closed():.0%} (from Table 2, same formula)")

    # C6: toxicity
    reductions = []
    for name in names:
        top_broad = largest_imitation(store, name, "broad")
        if top_broad is not None and base_config(store, name) is not None:
            reductions.append(_diff(store, store.get(base_config(store, name), "toxicity"), store.get(top_broad, "toxicity")))
    add("C6", "Imitation inherits the teacher's lower toxicity",
        "toxicity(base) − toxicity(largest broad), mean over bases", _mean_of(store, reductions),
        rules.c6_min_reduction, "above", "pts", "lower toxicity (RealToxicityPrompts; no single number)")
    return pd.DataFrame(rows)


RULES_TEXT = (
    "Decision rule for every claim: the statistic's {conf:.0%} bootstrap interval lies entirely on the "
    "claimed side of the threshold → **reproduced**; entirely on the other side → **not reproduced**; "
    "it contains the threshold → **inconclusive**; no data for the statistic in this run (e.g. one base "
    "model for a claim about size) → **not computable**. Intervals resample seeds, then "
    "items within each seed (paired across models), {n} replicates."
)


def scorecard_markdown(card: pd.DataFrame, run_name: str, confidence: float, n_resamples: int) -> str:
    """The scorecard as a markdown document."""
    shown = []
    for row in card.itertuples(index=False):
        scale = 100.0
        if np.isfinite(row.value):
            value = f"{row.value * scale:+.1f} [{row.lo * scale:+.1f}, {row.hi * scale:+.1f}] {row.unit}"
        else:
            value = "n/a"
        side = ">" if row.direction == "above" else "<"
        shown.append({
            "claim": row.claim, "statement": row.statement, "statistic": row.statistic, "ours": value,
            "rule": f"{side} {row.threshold * scale:g} {row.unit}", "verdict": f"**{row.verdict}**",
            "paper": row.paper, "note": row.note,
        })
    counts = card["verdict"].value_counts()
    verdicts = ["reproduced", "not reproduced", "inconclusive"] + (["not computable"] if counts.get("not computable") else [])
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in verdicts)
    return (
        f"# Claims scorecard: `{run_name}`\n\n{summary}.\n\n"
        + markdown_grid(pd.DataFrame(shown))
        + "\n" + RULES_TEXT.format(conf=confidence, n=n_resamples) + "\n"
    )
