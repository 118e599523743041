"""The paper's tables (Table 1, Table 2 analogs) and the tidy tables every figure draws from.

Every table is long (one row per number, with ``value``, ``lo``, ``hi``) so it can be saved as
CSV and plotted directly; :func:`to_markdown` pivots one for reading.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imitlib.analysis.metrics import CEILING, STYLE_METRICS, MetricStore
from imitlib.analysis.stats import Estimate

REPLAY_CONTROL = "replay_control"  # role of a base model trained on replay only, no imitation data

# how each metric is shown in markdown: (scale, digits); coefficients are shown as coefficients
DISPLAY = {
    "style:overlap": (1.0, 1),
    "style:length_r": (1.0, 2),
    "toxicity": (1.0, 3),
}
STYLE_LABELS = {
    "style:list": "uses a list when the teacher does (%)",
    "style:summary": "ends with a summary when the teacher does (%)",
    "style:overlap": "unigram overlap with the teacher's answer (F1 × 100)",
    "style:length_r": "Pearson r of response lengths",
    "style:authoritative": "authoritative tone (%)",
    "style:score": "style match score (%)",
}


COEFFICIENT_SUFFIXES = (":length_slope",)


def _display(metric: str) -> tuple[float, int]:
    if metric.startswith("gap_closed"):
        return 100.0, 0
    if metric.endswith(COEFFICIENT_SUFFIXES):  # logistic coefficients, not shares
        return 1.0, 2
    return DISPLAY.get(metric, (100.0, 1))


def _row(est: Estimate, **keys) -> dict:
    return {**keys, "value": est.value, "lo": est.lo, "hi": est.hi}


# ---- configuration lookups ----------------------------------------------------------------------
def base_models(store: MetricStore) -> list[str]:
    """Base model names (not the teacher), smallest first."""
    names = {c[1] for c, _ in store.estimates if c[0] in ("base", "imitation", REPLAY_CONTROL)}
    return sorted(names, key=lambda n: (store.base_params.get(n, 0), n))


def teacher_config(store: MetricStore) -> tuple | None:
    """The teacher's configuration, if the results have one."""
    for config, _ in store.estimates:
        if config[0] == "teacher":
            return config
    return None


def base_config(store: MetricStore, base_model: str) -> tuple | None:
    """The un-imitated base model's configuration."""
    for config, _ in store.estimates:
        if config[0] == "base" and config[1] == base_model:
            return config
    return None


def control_config(store: MetricStore, base_model: str) -> tuple | None:
    """The zero-imitation, replay-only control of a base model (same replay as every imitation run)."""
    for config, _ in store.estimates:
        # older evaluations label the control as an imitation run without data (kind none)
        if config[1] == base_model and (config[0] == REPLAY_CONTROL or config[0] == "imitation" and config[2] == "none"):
            return config
    return None


def imitation_configs(store: MetricStore, base_model: str, data_kind: str) -> list[tuple]:
    """Imitation configurations of one base model and data kind, by increasing token budget."""
    found = {c for c, _ in store.estimates if c[0] == "imitation" and c[1] == base_model and c[2] == data_kind}
    return sorted(found, key=lambda c: c[3])


def largest_imitation(store: MetricStore, base_model: str, data_kind: str) -> tuple | None:
    """The imitation configuration with the largest budget (None when there is none)."""
    found = [c for c in imitation_configs(store, base_model, data_kind) if c[3] > 0]
    return found[-1] if found else None


def gap_closed(store: MetricStore, imitation: Estimate, base: Estimate, teacher: Estimate) -> Estimate:
    """(imitation − base) / (teacher − base), replicate by replicate.

    Defined only where the teacher is above the base: with no gap to close (teacher ≤ base, e.g. a
    small real teacher that knows less than the student) the estimate is missing, and replicates
    without a positive gap are left out of the interval.
    """
    if not (np.isfinite(teacher.value) and np.isfinite(base.value)) or teacher.value <= base.value:
        return Estimate.missing(store.bootstrap.n_resamples)
    return store.bootstrap.combine(lambda i, b, t: np.where(t - b > 0, (i - b) / (t - b), np.nan),
                                   imitation, base, teacher)


# ---- Table 1 ------------------------------------------------------------------------------------
def teacher_ceiling(store: MetricStore, task: str = "qa") -> tuple[Estimate, str]:
    """The teacher's accuracy on the metric its students are scored with: the few-shot benchmark.

    The gap a student closes must be measured on one scale. The teacher's chat-format answers in the
    evaluation are its second, sampled ones (the style ceiling), so its chat accuracy is a sampled
    accuracy and is not compared with greedy benchmark scores. Falls back to chat accuracy only when
    the run has no benchmark score for the teacher. Returns the estimate and the metric it came from.
    """
    config = teacher_config(store)
    bench = store.get(config, f"acc:{task}")
    if np.isfinite(bench.value):
        return bench, f"acc:{task}"
    return store.get(config, f"acc:{task} (chat)"), f"acc:{task} (chat)"


def table1(store: MetricStore, task: str = "qa") -> pd.DataFrame:
    """Factual accuracy per base size: base, + broad, + task imitation, teacher (same benchmark), gap closed."""
    metric = f"acc:{task}"
    teacher, teacher_metric = teacher_ceiling(store, task)
    rows = []
    for name in base_models(store):
        params = store.base_params.get(name, 0)
        base = store.get(base_config(store, name), metric)
        rows.append(_row(base, base_model=name, base_params=params, column="base", imitation_tokens=0))
        for kind in ("broad", "task"):
            config = largest_imitation(store, name, kind)
            imitation = store.get(config, metric)
            tokens = config[3] if config else 0
            rows.append(_row(imitation, base_model=name, base_params=params, column=f"+{kind}", imitation_tokens=tokens))
            rows.append(_row(gap_closed(store, imitation, base, teacher), base_model=name, base_params=params,
                             column=f"gap_closed_{kind}", imitation_tokens=tokens))
        rows.append(_row(teacher, base_model=name, base_params=params, column="teacher", imitation_tokens=0))
    frame = pd.DataFrame(rows, columns=["base_model", "base_params", "column", "imitation_tokens", "value", "lo", "hi"])
    frame.insert(3, "metric", [c if c.startswith("gap_closed") else teacher_metric if c == "teacher" else metric
                               for c in frame["column"]])
    return frame


# ---- Table 2 ------------------------------------------------------------------------------------
def table2(store: MetricStore, data_kind: str = "broad") -> pd.DataFrame:
    """Style metrics vs the teacher's answer: base, each imitation budget, teacher's 2nd sample."""
    rows = []
    for name in base_models(store):
        columns: list[tuple[str, tuple, int]] = []
        base_cfg = base_config(store, name)
        if base_cfg:
            columns.append(("base", base_cfg, 0))
        for config in imitation_configs(store, name, data_kind):
            columns.append((f"{config[3]:,} tokens", config, config[3]))
        columns.append(("teacher 2nd sample", CEILING, 0))
        for label, config, tokens in columns:
            for metric in STYLE_METRICS:
                rows.append(_row(store.get(config, metric), base_model=name,
                                 base_params=store.base_params.get(name, 0), column=label,
                                 imitation_tokens=tokens, metric=metric))
    return pd.DataFrame(rows, columns=["base_model", "base_params", "column", "imitation_tokens", "metric", "value", "lo", "hi"])


# ---- figure tables ------------------------------------------------------------------------------
def model_table(store: MetricStore, metrics: list[str] | None = None) -> pd.DataFrame:
    """Long table of the chosen metrics for every configuration (the ceiling excluded)."""
    frame = store.frame()
    frame = frame[frame["role"] != CEILING[0]]
    if metrics is not None:
        frame = frame[frame["metric"].isin(metrics)]
    return frame.reset_index(drop=True)


def benchmark_table(store: MetricStore) -> pd.DataFrame:
    """Every benchmark (``acc:<task>`` and ``toxicity``) of every configuration (Figure 4)."""
    metrics = [m for m in store.metrics() if m.startswith("acc:") or m == "toxicity"]
    return model_table(store, metrics)


def preference_table(store: MetricStore, column: str) -> pd.DataFrame:
    """Raw, as-good-or-better, length-controlled and style-controlled preference vs the teacher."""
    metrics = [f"{column}:{k}" for k in ("rate", "good_or_better", "length_controlled", "style_controlled", "length_slope")]
    frame = model_table(store, metrics)
    frame["measure"] = frame["metric"].str.split(":", n=1).str[1]
    return frame


def style_factuality_table(store: MetricStore, task: str = "qa") -> pd.DataFrame:
    """One row per configuration: style match score and factual accuracy, with intervals."""
    frame = model_table(store, ["style:score", f"acc:{task}"])
    if frame.empty:
        return pd.DataFrame(columns=["role", "base_model", "data_kind", "imitation_tokens", "base_params",
                                     "style", "style_lo", "style_hi", "accuracy", "accuracy_lo", "accuracy_hi"])
    frame["which"] = np.where(frame["metric"] == "style:score", "style", "accuracy")
    wide = frame.pivot_table(index=["role", "base_model", "data_kind", "imitation_tokens", "base_params"],
                             columns="which", values=["value", "lo", "hi"], aggfunc="first")
    wide.columns = [w if v == "value" else f"{w}_{v}" for v, w in wide.columns]
    wide = wide.reset_index()
    for column in ("style", "style_lo", "style_hi", "accuracy", "accuracy_lo", "accuracy_hi"):
        if column not in wide.columns:
            wide[column] = np.nan
    return wide


# ---- formatting ---------------------------------------------------------------------------------
def format_cell(row: pd.Series) -> str:
    """``"value [lo, hi]"`` in the metric's display units."""
    if not np.isfinite(row["value"]):
        return "n/a"
    scale, digits = _display(str(row.get("metric", "")))
    return Estimate(row["value"], row["lo"], row["hi"], np.empty(0)).format(scale, digits)


def to_markdown(frame: pd.DataFrame, index: list[str], columns: str) -> str:
    """Pivot a long table into a markdown grid of ``value [lo, hi]`` cells (original column order)."""
    if frame.empty:
        return "_no data_\n"
    shown = frame.assign(cell=frame.apply(format_cell, axis=1))
    order = list(dict.fromkeys(shown[columns]))
    grid = shown.pivot_table(index=index, columns=columns, values="cell", aggfunc="first", sort=False)
    grid = grid.reindex(columns=order).fillna("n/a").reset_index()
    return markdown_grid(grid)


def markdown_grid(frame: pd.DataFrame) -> str:
    """A plain markdown table of a (small) DataFrame."""
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for values in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |")
    return "\n".join(lines) + "\n"


def table1_markdown(frame: pd.DataFrame) -> str:
    """Table 1 as markdown (accuracy in %, gap closed in %)."""
    return to_markdown(frame, ["base_model"], "column")


def table2_markdown(frame: pd.DataFrame) -> str:
    """Table 2 as markdown, one grid per base model."""
    parts = []
    for name, rows in frame.groupby("base_model", sort=False):
        rows = rows.assign(measure=rows["metric"].map(STYLE_LABELS))
        parts.append(f"**{name}**\n\n" + to_markdown(rows, ["measure"], "column"))
    return "\n".join(parts) if parts else "_no data_\n"
