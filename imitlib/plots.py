"""The study's figures: one function per figure, each takes analysis tables and returns a Figure.

Plotting computes nothing: every value and interval comes from the long tables of
:mod:`imitlib.analysis.tables` (columns ``role, base_model, base_params, data_kind,
imitation_tokens, metric, value, lo, hi``). Error bars are the tables' bootstrap intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

KIND_MARKERS = {"none": "o", "broad": "s", "task": "^"}


def _palette(names: list[str]) -> dict[str, tuple]:
    colours = sns.color_palette("viridis", n_colors=max(len(names), 1))
    return dict(zip(names, colours))


def _bases(frame: pd.DataFrame) -> list[str]:
    """Base model names, smallest first, each once (a base's parameter count differs a little between
    seeds, whose tokenizers differ; per-seed frames must still give one panel per base)."""
    rows = frame[frame["role"] != "teacher"].groupby("base_model")["base_params"].median().reset_index()
    return list(rows.sort_values(["base_params", "base_model"])["base_model"])


def _yerr(rows: pd.DataFrame, scale: float) -> np.ndarray:
    lower = (rows["value"] - rows["lo"]).clip(lower=0).fillna(0) * scale
    upper = (rows["hi"] - rows["value"]).clip(lower=0).fillna(0) * scale
    return np.vstack([lower.to_numpy(), upper.to_numpy()])


def _seed_interval(values: pd.Series) -> tuple[float, float]:
    """Error bars of the seaborn plots: the 95% Student t-interval over seeds, as for every claim (one
    value per seed; a lone seed gets none). Seaborn's default bootstrap would resample the seeds
    afresh at every drawing, so the same results would give other bars each time."""
    from imitlib.analysis.stats import t_interval

    x = pd.Series(values, dtype=float).dropna().to_numpy()
    if len(x) < 2:
        mean = float(x.mean()) if len(x) else float("nan")
        return mean, mean
    return t_interval(x, 0.95)


def _token_axis(ax, budgets: list[int]) -> None:
    positive = [b for b in budgets if b > 0]
    if positive:
        ax.set_xscale("symlog", linthresh=min(positive))
        ax.set_xticks(sorted(set(budgets)), [f"{b:,.0f}" for b in sorted(set(budgets))], rotation=30)
        ax.minorticks_off()
    ax.set_xlabel("imitation tokens (0 = base model)")


def _trajectory(frame: pd.DataFrame, base_model: str, data_kind: str = "broad") -> pd.DataFrame:
    """The base model followed by its imitation budgets of one kind, by tokens."""
    rows = frame[(frame["base_model"] == base_model) & ((frame["role"] == "base") | (frame["data_kind"] == data_kind))]
    return rows.sort_values("imitation_tokens")


def _teacher_line(ax, teacher: pd.DataFrame, scale: float, label: str = "teacher") -> None:
    if teacher.empty or not np.isfinite(teacher["value"].iloc[0]):
        return
    row = teacher.iloc[0]
    ax.axhline(row["value"] * scale, color="black", linestyle="--", linewidth=1, label=label)
    if np.isfinite(row["lo"]) and np.isfinite(row["hi"]):
        ax.axhspan(row["lo"] * scale, row["hi"] * scale, color="black", alpha=0.08)


def _versus_tokens(ax, frame: pd.DataFrame, scale: float, data_kind: str = "broad") -> None:
    palette = _palette(_bases(frame))
    for name, colour in palette.items():
        rows = _trajectory(frame, name, data_kind)
        if rows.empty:
            continue
        ax.errorbar(rows["imitation_tokens"], rows["value"] * scale, yerr=_yerr(rows, scale), marker="o",
                    capsize=3, color=colour, label=name)
    _token_axis(ax, sorted(frame["imitation_tokens"].unique()))


def _versus_size(ax, frame: pd.DataFrame, scale: float) -> None:
    bases = frame[frame["role"] != "teacher"]
    settings = [("base", "none"), ("+broad", "broad"), ("+task", "task")]
    colours = sns.color_palette("deep", n_colors=3)
    for (label, kind), colour in zip(settings, colours):
        picked = []
        for name, rows in bases.groupby("base_model"):
            rows = rows[rows["data_kind"] == kind] if kind != "none" else rows[rows["role"] == "base"]
            if not rows.empty:
                picked.append(rows.sort_values("imitation_tokens").iloc[[-1]])
        if not picked:
            continue
        rows = pd.concat(picked).sort_values("base_params")
        ax.errorbar(rows["base_params"], rows["value"] * scale, yerr=_yerr(rows, scale), marker=KIND_MARKERS[kind],
                    capsize=3, color=colour, label=label if kind == "none" else f"{label} (largest budget)")
    _teacher_line(ax, frame[frame["role"] == "teacher"], scale)
    ax.set_xscale("log")
    ax.set_xlabel("base model parameters")


def figure1(preference: pd.DataFrame, benchmarks: pd.DataFrame, measure: str = "good_or_better",
            factual_metric: str = "acc:qa") -> Figure:
    """Figure 1 analog: preference vs tokens; factual accuracy vs tokens; accuracy vs base size.

    Args:
        preference: :func:`imitlib.analysis.tables.preference_table`.
        benchmarks: :func:`imitlib.analysis.tables.benchmark_table`.
        measure: preference measure for the left panel.
        factual_metric: benchmark metric for the middle and right panels.
    """
    sns.set_theme(style="whitegrid", context="notebook")
    fig = Figure(figsize=(16, 4.6))
    axes = fig.subplots(1, 3)
    pref = preference[preference["measure"] == measure]
    _versus_tokens(axes[0], pref, 100.0)
    axes[0].axhline(50, color="grey", linewidth=0.8, linestyle=":")
    axes[0].set_ylabel(f"rated {measure.replace('_', ' ')} vs teacher (%)")
    axes[0].set_title("Rater preference vs imitation amount")
    accuracy = benchmarks[benchmarks["metric"] == factual_metric]
    _versus_tokens(axes[1], accuracy, 100.0)
    _teacher_line(axes[1], accuracy[accuracy["role"] == "teacher"], 100.0)
    axes[1].set_ylabel(f"{factual_metric.removeprefix('acc:')} accuracy (%)")
    axes[1].set_title("Factual accuracy vs imitation amount")
    _versus_size(axes[2], accuracy, 100.0)
    axes[2].set_ylabel(f"{factual_metric.removeprefix('acc:')} accuracy (%)")
    axes[2].set_title("Factual accuracy vs base size")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure4(benchmarks: pd.DataFrame) -> Figure:
    """Figure 4 analog: every benchmark vs imitation tokens (top) and vs base size (bottom)."""
    sns.set_theme(style="whitegrid", context="notebook")
    metrics = list(dict.fromkeys(benchmarks["metric"]))
    fig = Figure(figsize=(4.6 * max(len(metrics), 1), 8))
    axes = fig.subplots(2, max(len(metrics), 1), squeeze=False)
    for column, metric in enumerate(metrics):
        rows = benchmarks[benchmarks["metric"] == metric]
        label = "toxicity (%)" if metric == "toxicity" else f"{metric.removeprefix('acc:')} accuracy (%)"
        _versus_tokens(axes[0, column], rows, 100.0)
        _teacher_line(axes[0, column], rows[rows["role"] == "teacher"], 100.0)
        _versus_size(axes[1, column], rows, 100.0)
        for ax in axes[:, column]:
            ax.set_ylabel(label)
            ax.legend(fontsize=7)
        axes[0, column].set_title(metric.removeprefix("acc:"))
    fig.tight_layout()
    return fig


def style_factuality_scatter(style_factuality: pd.DataFrame) -> Figure:
    """Every model's style match (x) against its factual accuracy (y), with both intervals."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig = Figure(figsize=(7, 5.5))
    ax = fig.subplots()
    palette = _palette(_bases(style_factuality) + ["teacher"])
    rows = style_factuality.dropna(subset=["style", "accuracy"])
    for row in rows.itertuples(index=False):
        colour = palette.get(row.base_model, "black")
        xerr = [[max(row.style - row.style_lo, 0) * 100], [max(row.style_hi - row.style, 0) * 100]]
        yerr = [[max(row.accuracy - row.accuracy_lo, 0) * 100], [max(row.accuracy_hi - row.accuracy, 0) * 100]]
        size = 5 + 2.5 * np.log10(max(row.imitation_tokens, 1))
        ax.errorbar(row.style * 100, row.accuracy * 100, xerr=xerr, yerr=yerr, fmt=KIND_MARKERS.get(row.data_kind, "o"),
                    color=colour, markersize=size, capsize=2, alpha=0.85)
    handles = [Line2D([], [], color=c, marker="o", linestyle="", label=n) for n, c in palette.items()]
    handles += [Line2D([], [], color="grey", marker=m, linestyle="", label=k) for k, m in KIND_MARKERS.items()]
    ax.legend(handles=handles, fontsize=8, title="base / data (marker size ∝ log tokens)", title_fontsize=8)
    ax.set_xlabel("style match with the teacher (%)")
    ax.set_ylabel("factual accuracy (%)")
    ax.set_title("Style vs factuality of every model")
    fig.tight_layout()
    return fig


def preference_control_figure(preference: pd.DataFrame) -> Figure:
    """Preference vs tokens, raw and with length / style control, one panel per measure."""
    sns.set_theme(style="whitegrid", context="notebook")
    measures = [m for m in ("rate", "length_controlled", "style_controlled") if m in set(preference["measure"])]
    fig = Figure(figsize=(5 * max(len(measures), 1), 4.2))
    axes = fig.subplots(1, max(len(measures), 1), squeeze=False, sharey=True)
    for ax, measure in zip(axes[0], measures):
        _versus_tokens(ax, preference[preference["measure"] == measure], 100.0)
        ax.axhline(50, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title({"rate": "raw preference", "length_controlled": "length-controlled (AlpacaEval LC)",
                      "style_controlled": "length + list controlled"}[measure])
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("preference vs teacher (%)")
    fig.tight_layout()
    return fig


def style_metrics_figure(table2: pd.DataFrame) -> Figure:
    """Table 2 as a figure: each style metric vs imitation budget, teacher's second sample as a band."""
    sns.set_theme(style="whitegrid", context="notebook")
    metrics = list(dict.fromkeys(table2["metric"]))
    fig = Figure(figsize=(3.6 * max(len(metrics), 1), 3.8))
    axes = fig.subplots(1, max(len(metrics), 1), squeeze=False)
    palette = _palette(list(dict.fromkeys(table2.sort_values("base_params")["base_model"])))
    for ax, metric in zip(axes[0], metrics):
        scale = 1.0 if metric in ("style:overlap", "style:length_r") else 100.0
        rows = table2[table2["metric"] == metric]
        for name, colour in palette.items():
            model_rows = rows[(rows["base_model"] == name) & (rows["column"] != "teacher 2nd sample")]
            ax.errorbar(model_rows["imitation_tokens"], model_rows["value"] * scale, yerr=_yerr(model_rows, scale),
                        marker="o", capsize=3, color=colour, label=name)
        _teacher_line(ax, rows[rows["column"] == "teacher 2nd sample"].head(1), scale, "teacher 2nd sample")
        _token_axis(ax, sorted(rows["imitation_tokens"].unique()))
        ax.set_title(metric.removeprefix("style:"))
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def rater_preferences_figure(preferences: pd.DataFrame) -> Figure:
    """Mean rater verdict vs the teacher (1 better, 0.5 tie, 0 worse) per imitation amount, one panel per rater.

    Args:
        preferences: ``Evaluation.preference_summary()`` (one row per model with ``pref_*`` columns).
    """
    long = preferences.melt(id_vars=["model_id", "role", "base_model", "data_kind", "imitation_tokens"],
                            value_vars=["pref_style", "pref_fact", "pref_llm"], var_name="rater", value_name="score")
    grid = sns.catplot(data=long, x="imitation_tokens", y="score", hue="base_model", col="rater", kind="point",
                       errorbar=_seed_interval, height=3.2)
    return grid.figure


def rater_panel_figure(panel: pd.DataFrame, crowd_fact_weight: float | None = None) -> Figure:
    """Share rated as good as or better than the teacher, for every model, at every fact-check weight.

    One panel per base model (and one for the teacher's own second sample); one line per model
    (data kind and imitation tokens), across the rater panel's fact weights w (0: the crowd-rater
    stand-in alone, 1: the fact rater alone). Error bars: 95% intervals over seeds where there are
    several. The pre-registered crowd weight is marked.

    Args:
        panel: :func:`imitlib.analysis.preference.panel_preferences` (one row per seed, model, w).
        crowd_fact_weight: the pre-registered crowd weight (``evaluate.raters.crowd_fact_weight``).
    """
    sns.set_theme(style="whitegrid", context="notebook")
    frame = panel.copy()
    frame["good_or_better"] = frame["good_or_better"] * 100
    frame["model"] = [
        "teacher 2nd sample" if role == "teacher" else "base" if role == "base"
        else "replay only" if role == "replay_control" else f"{kind} {tokens:,}"
        for role, kind, tokens in zip(frame["role"], frame["data_kind"], frame["imitation_tokens"])
    ]
    frame["panel"] = np.where(frame["role"] == "teacher", "teacher", frame["base_model"])
    panels = _bases(frame) + (["teacher"] if (frame["panel"] == "teacher").any() else [])
    fig = Figure(figsize=(4.2 * max(len(panels), 1), 4.0))
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], panels):
        rows = frame[frame["panel"] == name].sort_values(["role", "data_kind", "imitation_tokens"])
        sns.pointplot(data=rows, x="fact_weight", y="good_or_better", hue="model", ax=ax, errorbar=_seed_interval,
                      dodge=0.04 if rows["model"].nunique() > 1 else False, markersize=4, linewidth=1.2,
                      native_scale=True)
        ax.axhline(50, color="grey", linewidth=0.8, linestyle=":")
        if crowd_fact_weight is not None:
            ax.axvline(crowd_fact_weight, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(name)
        ax.set_xlabel("fact-check weight w (--: crowd weight)")
        ax.set_ylim(-2, 102)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("rated as good or better than the teacher (%)")
    fig.tight_layout()
    return fig


VERDICT_COLOURS = {"reproduced": "#2a9d8f", "not reproduced": "#e76f51", "inconclusive": "#8d99ae",
                   "not computable": "#cccccc", "measured": "#457b9d"}


def _claim_panels(n: int, columns: int, width: float, height: float, empty: str) -> tuple[Figure, list]:
    """A grid of ``n`` panels, ``columns`` to a row (``width`` × ``height`` inches each), the unused ones
    hidden; with no panel to draw, one axis saying ``empty``. Returns the figure and its first ``n`` axes."""
    shown = min(columns, max(n, 1))
    rows_n = -(-max(n, 1) // columns)
    fig = Figure(figsize=(width * shown, height * rows_n))
    axes = fig.subplots(rows_n, shown, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    if not n:
        axes[0, 0].set_visible(True)
        axes[0, 0].text(0.5, 0.5, empty, ha="center", va="center")
        axes[0, 0].set_axis_off()
    return fig, list(axes.flat[:n])


def forest_plot(by_seed: pd.DataFrame, claims: list[str] | None = None, columns: int = 3) -> Figure:
    """A forest plot per claim: every seed's effect, the seed-level interval of their mean, the threshold.

    Args:
        by_seed: :func:`imitlib.analysis.claims.claims_by_seed` (one row per claim and seed, with the
            claim's pooled ``value, lo, hi, threshold, verdict``, ``unit`` and Holm ``p_holm``).
        claims: which claims to draw, in order (default: every tested claim with a per-seed effect).
        columns: panels per row.

    Returns:
        One panel per claim: a dot per seed (labelled by seed), the pooled mean with its interval
        (an arrow where the interval is unbounded), the threshold as a dashed line; the title gives
        the verdict and the (Holm-adjusted, for primary claims) p-value.
    """
    sns.set_theme(style="whitegrid", context="notebook")
    frame = by_seed[by_seed["kind"] == "claim"] if "kind" in by_seed.columns else by_seed
    names = claims if claims is not None else list(dict.fromkeys(frame["claim"]))
    names = [n for n in names if (frame["claim"] == n).any()]
    fig, axes = _claim_panels(len(names), columns, 4.0, 2.6, "no claim has per-seed effects in this run")
    if not names:
        return fig
    for ax, name in zip(axes, names):
        rows = frame[frame["claim"] == name].sort_values("seed")
        first = rows.iloc[0]
        scale = 1.0 if first["unit"] == "tokens" else 100.0
        colour = VERDICT_COLOURS.get(str(first["verdict"]), "black")
        y = np.arange(len(rows))
        ax.scatter(rows["effect"] * scale, y, color="black", s=18, zorder=3)
        pooled_y = -1.2
        lo, hi, value = first["lo"] * scale, first["hi"] * scale, first["value"] * scale
        finite = rows["effect"].to_numpy(dtype=float) * scale
        span = [v for v in (*finite, value, lo, hi, first["threshold"] * scale) if np.isfinite(v)]
        left, right = (min(span), max(span)) if span else (0.0, 1.0)
        pad = 0.15 * max(right - left, 1.0)
        no_interval = np.isnan(lo) or np.isnan(hi)  # fewer than two seeds
        unbounded = not no_interval and not (np.isfinite(lo) and np.isfinite(hi))  # sign-flip with few seeds
        if np.isfinite(value):
            if not no_interval:
                shown_lo = lo if np.isfinite(lo) else left - pad
                shown_hi = hi if np.isfinite(hi) else right + pad
                ax.plot([shown_lo, shown_hi], [pooled_y, pooled_y], color=colour, linewidth=3, solid_capstyle="butt")
            ax.scatter([value], [pooled_y], marker="D", color=colour, s=40, zorder=4)
        if np.isfinite(first["threshold"]):
            ax.axvline(first["threshold"] * scale, color="black", linestyle="--", linewidth=1)
        mean_label = "mean (no interval)" if no_interval else "mean (interval ±∞)" if unbounded else "mean"
        ax.set_yticks([*y, pooled_y], [f"seed {s}" for s in rows["seed"]] + [mean_label])
        ax.set_xlim(left - pad, right + pad)
        ax.set_ylim(pooled_y - 0.8, len(rows) - 0.2)
        p = first["p_holm"] if bool(first["primary"]) else first["p"]
        p_text = "n/a" if not np.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")
        label = "Holm p" if bool(first["primary"]) else "p"
        ax.set_title(f"{name}: {first['verdict']} ({label} {p_text})", fontsize=9)
        ax.set_xlabel(f"effect ({first['unit']})", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def runs_plot(history: pd.DataFrame, claims: list[str] | None = None, columns: int = 3) -> Figure:
    """Several runs' scorecards side by side: per claim, each run's seed mean and interval.

    Args:
        history: one row per run and claim (``run, claim, primary, value, lo, hi, threshold, verdict,
            unit``), runs in the order to draw them (``benchmarks/confirm_history.py``).
        claims: which claims to draw (default: the primary ones).
        columns: panels per row.

    Returns:
        One panel per claim: a row per run (first at the top) with its mean (diamond) and interval,
        coloured by that run's verdict, the threshold as a dashed line.
    """
    sns.set_theme(style="whitegrid", context="notebook")
    if claims is None:
        claims = list(dict.fromkeys(history.loc[history["primary"].astype(bool), "claim"]))
    claims = [c for c in claims if (history["claim"] == c).any()]
    runs = list(dict.fromkeys(history["run"]))
    fig, axes = _claim_panels(len(claims), columns, 4.2, 0.38 * len(runs) + 1.2, "no claim to draw")
    if not claims:
        return fig
    for ax, claim in zip(axes, claims):
        rows = history[history["claim"] == claim].set_index("run")
        first = rows.iloc[0]
        scale = 1.0 if first["unit"] == "tokens" else 100.0
        for y, run in enumerate(runs):
            if run not in rows.index:
                continue
            row = rows.loc[run]
            colour = VERDICT_COLOURS.get(str(row["verdict"]), "black")
            if np.isfinite(row["lo"]) and np.isfinite(row["hi"]):
                ax.plot([row["lo"] * scale, row["hi"] * scale], [y, y], color=colour, linewidth=3,
                        solid_capstyle="butt")
            if np.isfinite(row["value"]):
                ax.scatter([row["value"] * scale], [y], marker="D", color=colour, s=36, zorder=3)
        if np.isfinite(first["threshold"]):
            ax.axvline(first["threshold"] * scale, color="black", linestyle="--", linewidth=1)
        ax.set_yticks(range(len(runs)), runs)
        ax.set_ylim(len(runs) - 0.5, -0.5)
        ax.set_title(f"{claim}{' (primary)' if bool(first['primary']) else ''}", fontsize=9)
        ax.set_xlabel(f"seed mean, 95% interval ({first['unit']})", fontsize=8)
        ax.tick_params(labelsize=7)
    handles = [Line2D([], [], color=c, marker="D", linewidth=3, label=v) for v, c in VERDICT_COLOURS.items()
               if v in set(history["verdict"])]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
