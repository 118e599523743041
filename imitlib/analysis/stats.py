"""Uncertainty: a two-level (seeds, then items within seed) paired bootstrap, and decision rules.

Scheme. The unit of evaluation is an item of one seed's world, ``(seed, item_id)``. Every bootstrap
replicate (1) draws the seeds with replacement, then (2) for each drawn seed draws its items with
replacement; a unit's weight is how many times it was drawn. Every model's statistic in a replicate
is a weighted mean over the same units, so models evaluated on the same items are compared *paired*
(a difference between two models resamples the same items for both). Intervals are percentile
intervals of the replicates; point values are the plain estimates on the full data. With a single
seed, step (1) is a no-op and the interval reflects item noise only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import pandas as pd

Verdict = Literal["reproduced", "not reproduced", "inconclusive", "not computable"]


@dataclass(frozen=True)
class Estimate:
    """A point value with a bootstrap interval (and the replicates it came from)."""

    value: float
    lo: float
    hi: float
    replicates: np.ndarray = field(repr=False, compare=False)

    @classmethod
    def from_replicates(cls, value: float, replicates: np.ndarray, confidence: float) -> "Estimate":
        """Percentile interval of ``replicates`` at level ``confidence`` (NaN replicates ignored)."""
        reps = np.asarray(replicates, dtype=float)
        finite = reps[np.isfinite(reps)]
        if not np.isfinite(value) or finite.size == 0:
            return cls(float(value), float("nan"), float("nan"), reps)
        tail = (1.0 - confidence) / 2.0 * 100.0
        lo, hi = np.percentile(finite, [tail, 100.0 - tail])
        return cls(float(value), float(lo), float(hi), reps)

    @classmethod
    def missing(cls, n_replicates: int) -> "Estimate":
        """An estimate for which there is no data."""
        return cls(float("nan"), float("nan"), float("nan"), np.full(n_replicates, np.nan))

    def format(self, scale: float = 1.0, digits: int = 1) -> str:
        """``"value [lo, hi]"``, scaled (e.g. 100 for percent)."""
        if not np.isfinite(self.value):
            return "n/a"
        v, lo, hi = (x * scale for x in (self.value, self.lo, self.hi))
        return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


class Bootstrap:
    """Replicate weights over ``(seed, item_id)`` units, shared by every statistic of one analysis."""

    def __init__(self, units: pd.DataFrame, n_resamples: int = 1000, confidence: float = 0.95, rng_seed: int = 0):
        """
        Args:
            units: one row per unit with columns ``seed`` and ``item_id`` (duplicates are dropped).
            n_resamples: number of bootstrap replicates.
            confidence: interval level.
            rng_seed: seed of the resampling generator (fixes every interval).
        """
        missing = {"seed", "item_id"} - set(units.columns)
        if missing:
            raise ValueError(f"bootstrap units need columns seed and item_id; missing {sorted(missing)}")
        units = units[["seed", "item_id"]].drop_duplicates().sort_values(["seed", "item_id"]).reset_index(drop=True)
        if units.empty:
            raise ValueError("bootstrap needs at least one (seed, item_id) unit")
        self.units = units
        self.n_resamples = int(n_resamples)
        self.confidence = float(confidence)
        self._index = pd.MultiIndex.from_frame(units)
        rng = np.random.default_rng(rng_seed)
        seeds = units["seed"].unique()
        seed_draws = rng.multinomial(len(seeds), np.full(len(seeds), 1.0 / len(seeds)), size=self.n_resamples)
        weights = np.zeros((self.n_resamples, len(units)), dtype=np.float32)
        for s_index, seed in enumerate(seeds):
            cols = np.flatnonzero(units["seed"].to_numpy() == seed)
            n_items = len(cols)
            # drawing this seed k times, n_items each, sums to one multinomial of k * n_items draws
            draws = rng.multinomial(seed_draws[:, s_index] * n_items, np.full(n_items, 1.0 / n_items))
            weights[:, cols] = draws
        self.weights = weights

    @classmethod
    def from_samples(cls, samples: pd.DataFrame, n_resamples: int = 1000, confidence: float = 0.95,
                     rng_seed: int = 0) -> "Bootstrap":
        """Units are every ``(seed, item_id)`` of the tidy samples table."""
        return cls(samples[["seed", "item_id"]], n_resamples, confidence, rng_seed)

    # ---- unit vectors ----------------------------------------------------------------------------
    def unit_columns(self, rows: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per-unit means of ``columns`` over ``rows`` (NaN ignored) and the unit indices they sit at.

        Returns:
            ``(indices, values)`` with ``values`` of shape (units present, len(columns)).
        """
        if rows.empty:
            return np.zeros(0, dtype=int), np.zeros((0, len(columns)))
        grouped = rows.groupby(["seed", "item_id"], sort=False)[columns].mean()
        idx = self._index.get_indexer(grouped.index)
        if (idx < 0).any():
            bad = grouped.index[idx < 0][0]
            raise ValueError(f"unit (seed={bad[0]}, item_id={bad[1]!r}) is not among the bootstrap's units")
        return idx, grouped.to_numpy(dtype=float)

    def _weighted(self, idx: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(weights of each replicate at idx, values) restricted to finite values."""
        keep = np.isfinite(values)
        return self.weights[:, idx[keep]].astype(float), values[keep]

    def mean(self, rows: pd.DataFrame, column: str) -> Estimate:
        """Mean of ``column`` over ``rows`` (per-unit averaged first), with its interval."""
        idx, values = self.unit_columns(rows, [column])
        values = values[:, 0] if values.size else values.reshape(0)
        w, v = self._weighted(idx, values)
        if v.size == 0:
            return Estimate.missing(self.n_resamples)
        total = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            reps = (w @ v) / total
        return Estimate.from_replicates(float(v.mean()), reps, self.confidence)

    def pearson(self, rows: pd.DataFrame, x: str, y: str) -> Estimate:
        """Pearson correlation of ``x`` and ``y`` over units (weighted in each replicate)."""
        idx, values = self.unit_columns(rows, [x, y])
        if values.size == 0:
            return Estimate.missing(self.n_resamples)
        keep = np.isfinite(values).all(axis=1)
        idx, values = idx[keep], values[keep]
        if len(values) < 3:
            return Estimate.missing(self.n_resamples)
        point = _weighted_pearson(np.ones((1, len(values))), values[:, 0], values[:, 1])[0]
        reps = _weighted_pearson(self.weights[:, idx].astype(float), values[:, 0], values[:, 1])
        return Estimate.from_replicates(float(point), reps, self.confidence)

    def combine(self, function: Callable[..., np.ndarray], *estimates: Estimate) -> Estimate:
        """Apply ``function`` to the point values and, replicate by replicate, to the replicates."""
        with np.errstate(invalid="ignore", divide="ignore"):
            point = function(*(np.float64(e.value) for e in estimates))
            reps = function(*(e.replicates for e in estimates))
        return Estimate.from_replicates(float(point), np.asarray(reps, dtype=float), self.confidence)


def _weighted_pearson(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        total = w.sum(axis=1)
        mx, my = (w @ x) / total, (w @ y) / total
        cov = (w @ (x * y)) / total - mx * my
        vx = (w @ (x * x)) / total - mx**2
        vy = (w @ (y * y)) / total - my**2
        r = cov / np.sqrt(vx * vy)
    r[(vx <= 1e-12) | (vy <= 1e-12)] = np.nan
    return r


def decide(estimate: Estimate, threshold: float, direction: Literal["above", "below"]) -> Verdict:
    """The verdict for a claim "the statistic lies ``direction`` ``threshold``".

    Rule: the whole interval on the claimed side → ``reproduced``; the whole interval on the other
    side → ``not reproduced``; an interval that contains the threshold, or a value without a finite
    interval → ``inconclusive``; no value at all (the run holds no data for the statistic, e.g. a
    single base model for a claim about size) → ``not computable``.
    """
    if direction not in ("above", "below"):
        raise ValueError(f"direction must be 'above' or 'below', got {direction!r}")
    if not np.isfinite(estimate.value):
        return "not computable"
    lo, hi = estimate.lo, estimate.hi
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "inconclusive"
    if direction == "above":
        if lo > threshold:
            return "reproduced"
        if hi < threshold:
            return "not reproduced"
    else:
        if hi < threshold:
            return "reproduced"
        if lo > threshold:
            return "not reproduced"
    return "inconclusive"
