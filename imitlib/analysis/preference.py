"""Preference against the teacher, with and without length (or style) control.

Length control follows AlpacaEval's length-controlled win rate: for one model, a logistic model of
the rater's verdict (1 better, 0.5 tie, 0 worse; ties are soft targets of 0.5)

    logit P(model preferred) = theta + phi * tanh(delta_len / std(delta_len))

where ``delta_len`` is the model's answer length minus the teacher's (word tokens) and the std is
over that model's rated items. The controlled rate is ``sigmoid(theta)``: the predicted preference
when both answers have the same length. ``covariates=("length", "list")`` adds a
Chatbot-Arena-style markdown covariate ``tanh(delta_list_items / std)``. A small ridge penalty
(``RIDGE``) on the covariate slopes keeps fits finite when a covariate separates the verdicts.
The fits are batched over bootstrap replicates (weighted Newton iterations), so every controlled
rate carries the same paired interval as the raw rates.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from imitlib.analysis.stats import Bootstrap, Estimate

RIDGE = 1e-2
NEWTON_STEPS = 30
COVARIATES = ("length", "list")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def fit_logistic(features: np.ndarray, target: np.ndarray, weights: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """Weighted logistic regressions with soft targets, one per row of ``weights``.

    Args:
        features: (n, k) design matrix; column 0 is the intercept (not penalised).
        target: (n,) targets in [0, 1].
        weights: (B, n) non-negative weights, one regression per row.
        ridge: L2 penalty on every coefficient but the intercept.

    Returns:
        (B, k) coefficients.
    """
    n_fits, k = weights.shape[0], features.shape[1]
    penalty = np.full(k, ridge)
    penalty[0] = 1e-8
    theta = np.zeros((n_fits, k))
    for _ in range(NEWTON_STEPS):
        p = _sigmoid(theta @ features.T)
        grad = ((target - p) * weights) @ features - penalty * theta
        curvature = weights * p * (1 - p)
        hessian = np.einsum("bn,ni,nj->bij", curvature, features, features) + np.diag(penalty)
        step = np.linalg.solve(hessian, grad[..., None])[..., 0]
        theta = theta + step
        if np.max(np.abs(step)) < 1e-8:
            break
    return theta


def _scaled_tanh(delta: np.ndarray) -> np.ndarray:
    scale = np.std(delta)
    return np.tanh(delta / scale) if scale > 0 else np.zeros_like(delta)


def controlled_preference(
    rows: pd.DataFrame, bootstrap: Bootstrap, column: str, covariates: tuple[str, ...] = ("length",)
) -> tuple[Estimate, Estimate]:
    """Controlled preference rate of one model and the slope of its first covariate.

    Args:
        rows: the model's rows with ``column`` (verdict), ``answer`` and ``teacher_answer``;
            unrated rows (NaN verdict) are ignored. Expected extra columns ``length``,
            ``teacher_length``, ``list_items``, ``teacher_list_items`` (see
            :func:`imitlib.analysis.tables.add_style_features`).
        bootstrap: the analysis's replicate weights.
        column: the verdict column.
        covariates: subset of ``("length", "list")``.

    Returns:
        ``(controlled rate, first covariate's coefficient)``.
    """
    unknown = set(covariates) - set(COVARIATES)
    if unknown:
        raise ValueError(f"unknown covariates {sorted(unknown)}; choose from {COVARIATES}")
    rated = rows[rows[column].notna()]
    if rated.empty:
        return Estimate.missing(bootstrap.n_resamples), Estimate.missing(bootstrap.n_resamples)
    idx, values = bootstrap.unit_columns(
        rated, [column, "length", "teacher_length", "list_items", "teacher_list_items"]
    )
    target = np.clip(values[:, 0], 0.0, 1.0)
    design = [np.ones(len(values))]
    if "length" in covariates:
        design.append(_scaled_tanh(values[:, 1] - values[:, 2]))
    if "list" in covariates:
        design.append(_scaled_tanh(values[:, 3] - values[:, 4]))
    features = np.column_stack(design)
    point = fit_logistic(features, target, np.ones((1, len(target))))[0]
    reps = fit_logistic(features, target, bootstrap.weights[:, idx].astype(float))
    # replicates that drew no rated unit carry no information
    reps[bootstrap.weights[:, idx].sum(axis=1) == 0] = np.nan
    rate = Estimate.from_replicates(float(_sigmoid(point[0])), _sigmoid(reps[:, 0]), bootstrap.confidence)
    slope_point = float(point[1]) if features.shape[1] > 1 else float("nan")
    slope_reps = reps[:, 1] if features.shape[1] > 1 else np.full(len(reps), np.nan)
    return rate, Estimate.from_replicates(slope_point, slope_reps, bootstrap.confidence)


def panel_preferences(samples: pd.DataFrame) -> pd.DataFrame:
    """Preference vs the teacher of every model at every fact weight of the rater panel.

    Args:
        samples: tidy per-sample table(s) with ``pref_w<NNN>`` columns (one per fact weight).

    Returns:
        Long table, one row per (seed, model, fact weight): ``seed, model_id, role, base_model,
        base_params, data_kind, imitation_tokens, fact_weight, rated, rate, good_or_better`` (``rate``: mean
        verdict; ``good_or_better``: share of verdicts >= 0.5, the paper's "as good or better").
    """
    columns = sorted(c for c in samples.columns if re.fullmatch(r"pref_w\d{3}", c))
    if not columns:
        raise ValueError("samples table has no rater-panel columns pref_w000 ... (evaluate with the rater panel)")
    chat = samples[samples["mode"] == "chat"] if "mode" in samples.columns else samples
    keys = ["seed", "model_id", "role", "base_model", "base_params", "data_kind", "imitation_tokens"]
    rows = []
    for key, group in chat.groupby(keys, sort=True, dropna=False):
        for column in columns:
            values = pd.to_numeric(group[column], errors="coerce").dropna()
            rows.append({**dict(zip(keys, key)), "fact_weight": int(column[len("pref_w"):]) / 100, "rated": len(values),
                         "rate": float(values.mean()) if len(values) else np.nan,
                         "good_or_better": float((values >= 0.5).mean()) if len(values) else np.nan})
    return pd.DataFrame(rows, columns=[*keys, "fact_weight", "rated", "rate", "good_or_better"])

