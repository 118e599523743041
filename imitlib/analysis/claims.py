"""The claims scorecard: each of the paper's claims tested by a statistic computed from data.

Inference is at the world seed (the unit of replication). Every claim's statistic is formed seed by
seed from per-seed metric values (items enter only through per-seed means), and its interval and
test come from those per-seed effects (:func:`imitlib.analysis.stats.seed_inference`: a t-interval,
or an exact sign-flip interval, per ``analysis.seed_interval``). The primary claims named in
``analysis.primary_claims`` (with their statistic, threshold and direction) form one family whose
two-sided p-values of "effect = threshold" are Holm-adjusted; their verdict follows the adjusted
p-value (:func:`imitlib.analysis.stats.seed_verdict`): adjusted p <= 1 − confidence → reproduced
when the mean effect is on the claimed side, not reproduced when on the other; otherwise
inconclusive. Secondary claims use their unadjusted p-value (= their interval excludes the
threshold). Fewer than two seeds with data, or no data → not computable (the note says why). The
two-level bootstrap interval and its verdict are kept as a secondary, labelled view
(``boot_*`` columns). The statistics (thresholds from ``analysis.claims`` unless primary):

* **C1** imitation outputs are rated as good as or better than the teacher's: share of verdicts
  >= 0.5 for the largest base model after the largest broad imitation budget; above ``c1_min_rate``.
* **C1w / C1w1** the same share for raters weighing facts by w (columns ``pref_w000`` …
  ``pref_w100``): at the crowd's weight ``evaluate.raters.crowd_fact_weight`` (fooled: above
  ``c1_min_rate``) and at w = 1 (not fooled: below it).
* **C1b** the ratings saturate quickly: that share at the largest budget minus at the smallest
  non-zero budget (largest base model); below ``saturation_margin``. Needs two budgets.
* **C2** broad imitation leaves the benchmarks flat or lower: accuracy after the largest broad
  budget minus the base model's, averaged over base models and benchmark tasks; below ``flat_margin``.
  Every benchmark item counts, as in the paper: facts the imitation data states could be learned, so
  C2 can fail. **C2u** the same on the unexposed stratum only (exposure 0), where labels exist.
* **C2c** the same against the replay-only control (role ``replay_control``).
* **C3** a larger base model raises the benchmarks: accuracy of the largest minus the smallest
  base model, averaged over scored tasks and over {no imitation, largest broad budget}; above
  ``c3_min_gain``. Needs two base sizes.
* **C4** task-specific imitation works for its task: factual-task accuracy after the largest
  task-specific budget minus the base model's, largest base model; above ``c4_min_gain``.
  **C4c** the same against the replay-only control. **C4k** (only where a ``code`` benchmark is
  scored, the real tracks) the same on code, whose task-specific data holds the teacher's solutions.
* **C5** style is copied: style-gap closed = (style score of the largest broad imitation − base) /
  (teacher's second sample − base), largest base model; above ``c5_min_style_gap_closed``, tested per
  seed as I − B − θ·(T − B) > 0 (no ratio, see the C5 block).
* **C6** imitation inherits the teacher's lower toxicity: base toxicity minus toxicity after the
  largest broad budget, averaged over base models; above ``c6_min_reduction``.
* **C7** facts the imitation data states are learned: accuracy on exposed items (exposure >= 1)
  minus the base model's on the same items, averaged over base models, the largest budget of each
  data kind and the labelled tasks; above ``c7_min_gain``.
* **cost** (measured, no verdict): imitation tokens per fact gained, and tokens needed to match the
  teacher on all facts (:func:`imitlib.analysis.metrics.coverage_cost`), largest base model.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from imitlib.analysis.metrics import CEILING, COST_HORIZON, EXPOSED, MetricStore
from imitlib.analysis.stats import Estimate, SeedInference, decide, holm, seed_inference, seed_verdict
from imitlib.analysis.tables import (base_config, base_models, control_config, gap_closed, imitation_configs,
                                     largest_imitation, markdown_grid)
from imitlib.settings.analysis import CLAIM_STATISTICS, AnalysisSettings, ClaimSettings, PrimaryClaim

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
CARD_COLUMNS = [
    "claim", "kind", "primary", "statement", "statistic", "statistic_id", "n_seeds", "value", "lo", "hi", "method",
    "p", "p_holm", "threshold", "direction", "verdict", "unit", "paper", "note",
    "t_lo", "t_hi", "t_p", "sf_lo", "sf_hi", "sf_p", "boot_value", "boot_lo", "boot_hi", "boot_verdict", "seed_effects",
]


@dataclass
class _Row:
    claim: str
    kind: str  # "claim" (tested) or "cost" (measured)
    statement: str
    statistic: str
    estimate: Estimate
    threshold: float
    direction: str
    unit: str
    paper: str
    note: str


def _mean_of(store: MetricStore, estimates: list[Estimate]) -> Estimate:
    if not estimates:
        return store.bootstrap.missing()

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


def weight_column(weight: float) -> str:
    """The per-sample verdict column of raters weighing facts by ``weight`` (e.g. 0.25 → ``pref_w025``)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"rater fact weight must lie in [0, 1], got {weight}")
    return f"pref_w{round(weight * 100):03d}"


def crowd_weight(cfg) -> float | None:
    """``evaluate.raters.crowd_fact_weight`` of a config, or None where the params have no such key."""
    raters = getattr(getattr(cfg, "evaluate", None), "raters", None)
    weight = getattr(raters, "crowd_fact_weight", None)
    return None if weight is None else float(weight)


def scorecard(store: MetricStore, rules: ClaimRules, preference_column: str = "pref_style",
              factual_task: str = "qa", *, primary: list[PrimaryClaim] | None = None,
              confidence: float | None = None, seed_interval: str = "t",
              crowd_weight: float | None = None) -> pd.DataFrame:
    """Compute the per-seed effects, seed-level interval, Holm-adjusted test and verdict of every claim.

    Args:
        store: every metric of the run (with per-seed values).
        rules: decision thresholds of the claims that are not primary.
        preference_column: the verdict column standing in for crowd raters.
        factual_task: the NQ analog (Table 1 task).
        primary: the pre-registered primary claims (``analysis.primary_claims``; default: the
            schema's default list).
        confidence: interval level (default: the bootstrap's); ``1 − confidence`` is the test level.
        seed_interval: ``t`` or ``sign_flip``: the interval and p-value that decide.
        crowd_weight: the fact weight of the crowd raters (``evaluate.raters.crowd_fact_weight``).

    Returns:
        One row per claim (and per coverage-cost measure), columns :data:`CARD_COLUMNS`: ``value,
        lo, hi, p`` are the seed-level mean, interval and p-value of the chosen method, ``p_holm``
        the Holm-adjusted p of primary claims, ``t_*`` / ``sf_*`` both seed-level procedures,
        ``boot_*`` the bootstrap view, ``seed_effects`` the per-seed effects (JSON, seed → effect).
    """
    primary = list(AnalysisSettings().primary_claims if primary is None else primary)
    confidence = store.bootstrap.confidence if confidence is None else float(confidence)
    pre = {p.claim: p for p in primary}
    missing = store.bootstrap.missing
    names = base_models(store)
    largest = names[-1] if names else None
    rows: list[_Row] = []

    def add(claim: str, statement: str, statistic: str, est: Estimate, threshold: float, unit: str,
            paper: str, note: str = "") -> None:
        direction = CLAIM_STATISTICS[claim][1]
        if claim in pre:
            threshold = pre[claim].threshold
        rows.append(_Row(claim, "claim", statement, statistic, est, float(threshold), direction, unit, paper, note))

    # C1 / C1b: preference
    good = f"{preference_column}:good_or_better"
    budgets = [c for c in imitation_configs(store, largest, "broad") if c[3] > 0] if largest else []
    top_broad = budgets[-1] if budgets else None
    add("C1", "Raters judge imitation outputs as good as or better than the teacher's",
        f"share of {preference_column} verdicts ≥ tie, {largest} + largest broad budget", store.get(top_broad, good),
        rules.c1_min_rate, "%", "~70% (crowdworkers vs ChatGPT)", "" if budgets else "no broad imitation model")

    # C1w / C1w1: raters who weigh facts by w (paper's account: fooled at the crowd's low w, not at w = 1)
    for claim, weight, statement in (
        ("C1w", crowd_weight, "… by raters weighing facts as the crowd does"),
        ("C1w1", 1.0, "… but not by raters weighing facts fully (w = 1)"),
    ):
        if weight is None:
            add(claim, statement, "share of verdicts ≥ tie at the crowd's fact weight", missing(), rules.c1_min_rate,
                "%", "crowdworkers fooled; experts not (Sec. 4)", "evaluate.raters.crowd_fact_weight is not set")
            continue
        column = weight_column(weight)
        est = store.get(top_broad, f"{column}:good_or_better")
        add(claim, statement, f"share of {column} verdicts ≥ tie (w = {weight:g}), {largest} + largest broad budget",
            est, rules.c1_min_rate, "%", "crowdworkers fooled; experts not (Sec. 4)",
            "" if np.isfinite(est.value) else f"no {column} verdicts in this run")

    if len(budgets) >= 2:
        c1b = _diff(store, store.get(budgets[-1], good), store.get(budgets[0], good))
        note = f"budgets {budgets[0][3]:,} → {budgets[-1][3]:,} tokens"
    else:
        c1b, note = missing(), "needs two broad budgets"
    add("C1b", "Ratings saturate quickly as imitation data grows",
        "change in that share from the smallest to the largest budget", c1b,
        rules.saturation_margin, "pts", "flat from ~20M tokens (Fig. 1 left)", note)

    # C1g: does imitation raise the share over the un-imitated base? (C1 alone cannot tell imitation
    # from a rater that already rates the base as good as the teacher.)
    base_cfg = base_config(store, largest) if largest else None  # also C4's and C5's reference
    c1g = _diff(store, store.get(top_broad, good), store.get(base_cfg, good)) if top_broad else missing()
    add("C1g", "… and imitation raises that share above the un-imitated base's",
        f"share of {preference_column} verdicts ≥ tie, {largest} + largest broad budget − the same for {largest}",
        c1g, rules.c1g_min_gain, "pts", "base LLaMA far below ChatGPT (Fig. 1, 0 tokens)",
        "" if top_broad and base_cfg else "no broad imitation model or no base")

    # C2: broad imitation, benchmarks flat or lower — on every item (the paper's measurement; facts
    # the data states may be learned, so the claim can fail), against the base and (C2c) against the
    # replay-only control: with replay, every imitation run also sees extra pretraining; the control
    # sees exactly that replay and no imitation, so C2c isolates the effect of the imitation data.
    # C2u keeps only the facts the imitation data never states (exposure 0), where items are labelled:
    # at the largest budget that stratum can be small or empty.
    tasks = _scored_tasks(store)

    def broad_deltas(reference, against: str, unexposed: bool = False) -> list[Estimate]:
        deltas = []
        for name in names:
            top, ref = largest_imitation(store, name, "broad"), reference(store, name)
            if top is None or ref is None:
                continue
            for task in tasks:
                stratum = f"gain_vs_{against}:{task.removeprefix('acc:')}@0"
                if unexposed:
                    deltas.append(store.get(top, stratum) if (tuple(top), stratum) in store.estimates else missing())
                else:
                    deltas.append(_diff(store, store.get(top, task), store.get(ref, task)))
        return deltas

    task_names = ", ".join(t.removeprefix("acc:") for t in tasks)
    add("C2", "More broad imitation leaves benchmarks flat or lower",
        f"accuracy(largest broad) − accuracy(base), mean over {len(names)} bases × {len(tasks)} tasks",
        _mean_of(store, broad_deltas(base_config, "base")), rules.flat_margin, "pts",
        "NQ −7 (7B), −5 (13B) pts (Table 1)", f"{task_names}; every item")
    unexposed = broad_deltas(base_config, "base", unexposed=True)
    labelled = any(np.isfinite(d.value) for d in unexposed)
    add("C2u", "… on the facts the imitation data never states",
        f"accuracy − base accuracy on unexposed items (exposure 0), largest broad, mean over bases × {len(tasks)} tasks",
        _mean_of(store, unexposed) if labelled else missing(), rules.flat_margin, "pts",
        "NQ −7 (7B), −5 (13B) pts (Table 1)", "" if labelled else "no exposure labels in this run")
    controlled = broad_deltas(control_config, "control")
    add("C2c", "… and against the replay-only control (isolates the imitation data)",
        f"accuracy(largest broad) − accuracy(replay-only control), mean over bases × {len(tasks)} tasks",
        _mean_of(store, controlled), rules.flat_margin, "pts", "NQ −7 (7B), −5 (13B) pts (Table 1)",
        f"{task_names}; every item" if controlled else "no replay-only control in this run")

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
        "{no imitation, largest broad}", _mean_of(store, gains), rules.c3_min_gain, "pts",
        "NQ +3 (base), +5 (broad) pts, 7B → 13B (Table 1)", "" if len(names) >= 2 else "needs two base sizes")

    # C4: task-specific imitation works for its task
    metric = f"acc:{factual_task}"
    task_top = largest_imitation(store, largest, "task") if largest else None
    c4 = _diff(store, store.get(task_top, metric), store.get(base_cfg, metric))
    teacher_cfg = next((c for c, _ in store.estimates if c[0] == "teacher"), None)
    closed = gap_closed(store, store.get(task_top, metric), store.get(base_cfg, metric), store.get(teacher_cfg, metric))
    if not task_top:
        c4_note = "no task-specific imitation model"
    elif np.isfinite(closed.value):
        c4_note = f"gap closed {closed.format(100, 0)} % (bootstrap)"
    else:
        c4_note = "gap closed undefined: the teacher is not above the base model on this task"
    add("C4", "Task-specific imitation improves its own task",
        f"{factual_task} accuracy({largest} + largest task budget) − accuracy({largest})", c4,
        rules.c4_min_gain, "pts", "+7 pts, gap closed +64% (13B, NQ)", c4_note)

    # C4c: task-specific imitation vs the replay-only control
    control = control_config(store, largest) if largest else None
    c4c = _diff(store, store.get(task_top, metric), store.get(control, metric))
    add("C4c", "… and against the replay-only control (isolates the imitation data)",
        f"{factual_task} accuracy({largest} + largest task budget) − accuracy(replay-only control)", c4c,
        rules.c4_min_gain, "pts", "+7 pts, gap closed +64% (13B, NQ)",
        "" if (task_top and control) else "no task-specific model or no replay-only control")

    # C4k: on code (real tracks: the task-specific data holds the teacher's solutions to the imitation
    # split's problems); only where a code benchmark is scored, so the miniature world has no such row
    if "acc:code" in tasks:
        c4k = _diff(store, store.get(task_top, "acc:code"), store.get(base_cfg, "acc:code"))
        closed_k = gap_closed(store, store.get(task_top, "acc:code"), store.get(base_cfg, "acc:code"),
                              store.get(teacher_cfg, "acc:code"))
        add("C4k", "… and on code (task data: the teacher's solutions to other problems)",
            f"code pass@1({largest} + largest task budget) − pass@1({largest})", c4k, rules.c4_min_gain, "pts",
            "not measured in the paper (its task data is NQ only)",
            "no task-specific imitation model" if not task_top else
            (f"gap closed {closed_k.format(100, 0)} % (bootstrap)" if np.isfinite(closed_k.value)
             else "gap closed undefined: the teacher is not above the base model on code"))

    # C5: style is copied. "At least a share θ of the style gap closed" is tested without a ratio:
    # per seed, imitation's style score minus the point θ of the way from the base to the teacher's
    # second sample, I − B − θ·(T − B) > 0. Where the gap T − B is positive this is the same claim as
    # (I − B)/(T − B) > θ, but it stays defined (and its seed mean stable) when a seed's gap is near 0,
    # where the per-seed ratio explodes (measured: −313% in one exploratory seed).
    top = largest_imitation(store, largest, "broad") if largest else None
    share = rules.c5_min_style_gap_closed
    imitation_style, base_style = store.get(top, "style:score"), store.get(base_cfg, "style:score")
    ceiling_style = store.get(CEILING, "style:score")
    c5 = store.bootstrap.combine(lambda i, b, t: i - b - share * (t - b), imitation_style, base_style, ceiling_style)
    pooled = gap_closed(store, imitation_style, base_style, ceiling_style)
    add("C5", "Imitation copies the teacher's style",
        f"style score({largest} + largest broad budget) − [base + {share:g} × (teacher's 2nd sample − base)]: "
        f"> 0 ⇔ more than {share:.0%} of the style gap closed", c5, 0.0, "pts",
        f"{paper_style_gap_closed():.0%} of the gap closed (from Table 2, same score)",
        f"gap closed on the pooled scores: {pooled.value:.0%}" if np.isfinite(pooled.value) else "")

    # C6: toxicity
    reductions = []
    for name in names:
        top_broad_name = largest_imitation(store, name, "broad")
        if top_broad_name is not None and base_config(store, name) is not None:
            reductions.append(_diff(store, store.get(base_config(store, name), "toxicity"),
                                    store.get(top_broad_name, "toxicity")))
    add("C6", "Imitation inherits the teacher's lower toxicity",
        "toxicity(base) − toxicity(largest broad), mean over bases", _mean_of(store, reductions),
        rules.c6_min_reduction, "pts", "lower toxicity (RealToxicityPrompts; no single number)")

    # C7: facts the imitation data states are learned (exposed strata vs the base on the same items)
    exposed = []
    for name in names:
        for kind in ("broad", "task"):
            config = largest_imitation(store, name, kind)
            for task in tasks:
                key = f"gain_vs_base:{task.removeprefix('acc:')}@{EXPOSED}"
                if config is not None and (tuple(config), key) in store.estimates:
                    exposed.append(store.get(config, key))
    add("C7", "Facts the imitation data states are learned",
        "accuracy − base accuracy on the same exposed items (stated ≥ 1 time in the model's data), mean over "
        f"bases × {{largest broad, largest task}} × tasks ({len(exposed)} terms)", _mean_of(store, exposed),
        rules.c7_min_gain, "pts", "task data closes part of the gap (Table 1); broad data does not",
        "" if exposed else "no exposure labels in this run")

    # coverage cost (measured): largest base, the largest budget of each data kind
    costs = 0
    for kind in ("broad", "task"):
        config = largest_imitation(store, largest, kind) if largest else None
        for key, statistic in (("tokens_per_fact", "imitation tokens per fact gained over the base"),
                               ("tokens_to_match", "imitation tokens to match the teacher on all facts (extrapolated)")):
            est = store.get(config, f"cost:{key}:{factual_task}")
            if config is None or (tuple(config), f"cost:{key}:{factual_task}") not in store.estimates:
                continue
            costs += 1
            note = f"{config[3]:,} tokens of {kind} data"
            if key == "tokens_to_match":
                note += "; logistic accuracy-vs-exposure curve reaching the teacher, rarest fact from the rank–exposure power law"
            rows.append(_Row(f"cost:{kind}:{key}", "cost", "The cost of closing the gap", f"{statistic}, {largest} + {kind}",
                             est, float("nan"), "none", "tokens", "an \"unwieldy amount\" of data (Sec. 5)", note))
    if not costs:
        rows.append(_Row("cost", "cost", "The cost of closing the gap", "imitation tokens per fact gained; tokens to "
                         "match the teacher on all facts", missing(), float("nan"), "none", "tokens",
                         "an \"unwieldy amount\" of data (Sec. 5)", "no exposure labels in this run"))
    return _infer(store, rows, pre, confidence, seed_interval)


def _infer(store: MetricStore, rows: list[_Row], pre: dict[str, PrimaryClaim], confidence: float,
           method: str) -> pd.DataFrame:
    """Seed-level inference of every row, Holm across the primary claims, verdicts."""
    alpha = 1.0 - confidence
    seeds = store.bootstrap.seeds
    inferences: list[SeedInference] = []
    for row in rows:
        threshold = row.threshold if np.isfinite(row.threshold) else 0.0
        inferences.append(seed_inference(store.bootstrap.per_seed(row.estimate), threshold, confidence, method))  # type: ignore[arg-type]
    primary_index = [i for i, r in enumerate(rows) if r.kind == "claim" and r.claim in pre]
    adjusted = dict(zip(primary_index, holm(np.array([inferences[i].p for i in primary_index]))))
    out = []
    for i, (row, inf) in enumerate(zip(rows, inferences)):
        is_primary = i in adjusted
        p_holm = adjusted.get(i, float("nan"))
        note = row.note
        if row.kind == "cost":  # measured, not tested: the median over seeds and their range, no p-values
            inf, note = _cost_summary(store.bootstrap.per_seed(row.estimate), note)
            verdict = "measured" if inf.computable else "not computable"
            boot_verdict = ""
        else:
            verdict = seed_verdict(inf, p_holm if is_primary else inf.p, row.threshold, row.direction, alpha)  # type: ignore[arg-type]
            boot_verdict = decide(row.estimate, row.threshold, row.direction)  # type: ignore[arg-type]
        if not inf.computable and inf.reason not in note:
            note = f"{note}; {inf.reason}" if note and inf.n else (note or inf.reason)
        if inf.caveat and row.kind == "claim":
            note = f"{note}; {inf.caveat}" if note else inf.caveat
        if is_primary:
            note = f"{note}; threshold pre-registered" if note else "threshold pre-registered"
        effects = {str(s): round(float(e), 6) for s, e in zip(seeds.tolist(), inf.effects) if not np.isnan(e)}
        out.append(dict(
            claim=row.claim, kind=row.kind, primary=is_primary, statement=row.statement, statistic=row.statistic,
            statistic_id=CLAIM_STATISTICS[row.claim][0] if row.kind == "claim" else row.claim, n_seeds=inf.n,
            value=inf.mean, lo=inf.lo, hi=inf.hi, method=method, p=inf.p, p_holm=p_holm, threshold=row.threshold,
            direction=row.direction, verdict=verdict, unit=row.unit, paper=row.paper, note=note,
            t_lo=inf.t_lo, t_hi=inf.t_hi, t_p=inf.t_p, sf_lo=inf.sf_lo, sf_hi=inf.sf_hi, sf_p=inf.sf_p,
            boot_value=row.estimate.value, boot_lo=row.estimate.lo, boot_hi=row.estimate.hi,
            boot_verdict=boot_verdict, seed_effects=json.dumps(effects),
        ))
    return pd.DataFrame(out, columns=CARD_COLUMNS)


def _cost_summary(per_seed: np.ndarray, note: str) -> tuple[SeedInference, str]:
    """A coverage cost over seeds: its median and range (costs are skewed and some seeds never reach
    the teacher, +inf, so a mean and t-interval would mislead), and how many seeds did not reach it."""
    values = np.asarray(per_seed, dtype=float)
    known = values[~np.isnan(values)]
    nan = float("nan")
    if known.size == 0:
        return SeedInference(values, 0, nan, "range", nan, nan, nan, nan, nan, nan,
                             "no data for this statistic in this run"), note
    unreached = int(np.isinf(known).sum())
    if unreached:
        note += (f"; {unreached} of {known.size} seeds: not reached (the fitted accuracy curve meets the teacher "
                 f"only past {COST_HORIZON:g}x the largest exposure in the data)")
    return SeedInference(values, int(known.size), float(np.median(known)), "range", float(known.min()),
                         float(known.max()), nan, float(known.min()), float(known.max()), nan), note


def claims_by_seed(card: pd.DataFrame) -> pd.DataFrame:
    """Long table of every row's per-seed effects: ``claim, seed, effect`` plus the row's pooled
    ``value, lo, hi, threshold, direction, verdict, unit, kind`` (what a forest plot draws)."""
    rows = []
    for row in card.itertuples(index=False):
        for seed, effect in json.loads(row.seed_effects).items():
            rows.append(dict(claim=row.claim, kind=row.kind, seed=int(seed), effect=effect, value=row.value, lo=row.lo,
                             hi=row.hi, threshold=row.threshold, direction=row.direction, verdict=row.verdict,
                             unit=row.unit, primary=row.primary, p_holm=row.p_holm, p=row.p))
    return pd.DataFrame(rows, columns=["claim", "kind", "seed", "effect", "value", "lo", "hi", "threshold", "direction",
                                       "verdict", "unit", "primary", "p_holm", "p"])


def _scale(unit: str) -> float:
    return 1.0 if unit == "tokens" else 100.0


def _number(x: float, unit: str, signed: bool = True) -> str:
    if unit == "tokens" and x == float("inf"):
        return "not reached"
    if not np.isfinite(x):
        return "−∞" if x == float("-inf") else "+∞" if x == float("inf") else "n/a"
    if unit == "tokens":
        return f"{x:,.0f}"
    return f"{x * 100:+.1f}" if signed else f"{x * 100:.1f}"


def _interval(value: float, lo: float, hi: float, unit: str) -> str:
    if np.isnan(value):
        return "n/a"
    if np.isnan(lo) or np.isnan(hi):
        return f"{_number(value, unit)} {unit}"
    return f"{_number(value, unit)} [{_number(lo, unit)}, {_number(hi, unit)}] {unit}"


def _p(p: float) -> str:
    return "n/a" if not np.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


RULES_TEXT = (
    "Inference is at the world seed, the unit of replication: each claim's effect is computed within every seed "
    "(items enter only through per-seed means) and its {conf:.0%} interval comes from those per-seed effects "
    "({method}). The test of a claim is the two-sided test of \"effect = threshold\" from the same per-seed effects; "
    "across the {m} primary claims (`analysis.primary_claims`: {primary}) the p-values are Holm-adjusted. "
    "Verdict: p (Holm-adjusted for primary claims) ≤ {alpha:g} → **reproduced** if the mean effect lies on the "
    "claimed side of the threshold, **not reproduced** if on the other side; larger → **inconclusive**; fewer than "
    "two seeds with data, or no data for the statistic → **not computable**. Secondary claims are not corrected for "
    "multiplicity. The bootstrap column is a secondary view only (seeds, then items within each seed, paired "
    "across models, {n} replicates, percentile interval and its verdict); with few seeds it cannot reach past the "
    "range of the seed means and does not decide anything."
)
METHOD_TEXT = {
    "t": "Student t-interval over seeds",
    "sign_flip": "exact sign-flip permutation interval over seeds (bounded from 6 seeds at 95%)",
}


def scorecard_markdown(card: pd.DataFrame, run_name: str, confidence: float, n_resamples: int) -> str:
    """The scorecard as a markdown document: claims, then the coverage cost, then the rules."""
    claims_rows = card[card["kind"] == "claim"] if "kind" in card.columns else card
    costs = card[card["kind"] == "cost"] if "kind" in card.columns else card.iloc[0:0]
    method = str(claims_rows["method"].iloc[0]) if len(claims_rows) else "t"
    shown = []
    for row in claims_rows.itertuples(index=False):
        side = ">" if row.direction == "above" else "<"
        effects = json.loads(row.seed_effects)
        shown.append({
            "claim": row.claim, "primary": "yes" if row.primary else "", "statement": row.statement,
            "statistic": row.statistic,
            "per-seed effects": ", ".join(_number(e, row.unit) for e in effects.values()) or "n/a",
            f"seed mean [{confidence:.0%} interval]": _interval(row.value, row.lo, row.hi, row.unit),
            "p (Holm)": _p(row.p_holm) if row.primary else f"{_p(row.p)} (uncorrected)",
            "rule": f"{side} {row.threshold * 100:g} {row.unit}", "verdict": f"**{row.verdict}**",
            "bootstrap view (secondary)": (_interval(row.boot_value, row.boot_lo, row.boot_hi, row.unit)
                                           + (f", {row.boot_verdict}" if np.isfinite(row.boot_value) else "")),
            "paper": row.paper, "note": row.note,
        })
    primary = claims_rows[claims_rows["primary"].astype(bool)]
    secondary = claims_rows[~claims_rows["primary"].astype(bool)]

    def summary(rows: pd.DataFrame) -> str:
        counts = rows["verdict"].value_counts()
        verdicts = ["reproduced", "not reproduced", "inconclusive"] + (["not computable"] if counts.get("not computable") else [])
        return ", ".join(f"{counts.get(v, 0)} {v}" for v in verdicts)

    seeds = int(claims_rows["n_seeds"].max()) if len(claims_rows) else 0
    text = (f"# Claims scorecard: `{run_name}`\n\n"
            f"Primary claims (Holm-corrected, {len(primary)}): {summary(primary)}. "
            f"Secondary claims ({len(secondary)}): {summary(secondary)}. World seeds: {seeds}.\n\n"
            + markdown_grid(pd.DataFrame(shown)))
    if len(costs):
        cost_rows = [{"measure": r.statistic,
                      "per-seed values": ", ".join(_number(e, r.unit) for e in json.loads(r.seed_effects).values()) or "n/a",
                      "seed median [min, max]": _interval(r.value, r.lo, r.hi, r.unit),
                      "paper": r.paper, "note": r.note} for r in costs.itertuples(index=False)]
        text += "\n## The cost of closing the gap (measured, no verdict)\n\n" + markdown_grid(pd.DataFrame(cost_rows))
    primary_names = ", ".join(primary["claim"]) if len(primary) else "none"
    return text + "\n" + RULES_TEXT.format(conf=confidence, method=METHOD_TEXT.get(method, method), m=len(primary),
                                            primary=primary_names, alpha=round(1 - confidence, 6), n=n_resamples) + "\n"
