"""Uncertainty: seed-level inference (the confirmatory view), a two-level bootstrap (secondary view).

Seed level (primary). The unit of replication is the world seed: every seed rebuilds the world,
its models and the sweep. Every estimate carries its per-seed values (``Estimate.per_seed``: the
statistic computed on that seed's items only, so items enter only through per-seed means), and a
claim's statistic is formed seed by seed from them. Its interval is computed from those per-seed
effects alone (:func:`seed_inference`): a Student t-interval (``scipy.stats.t``), or an exact
sign-flip permutation interval (the subset-means interval of Hartigan 1969). The test of a claim is
the matching two-sided test of "effect = threshold"; across the pre-registered primary claims the
p-values are Holm-adjusted (:func:`holm`) and the verdict follows the adjusted p-value
(:func:`seed_verdict`). With one seed there is no seed-level interval: "not computable".

Bootstrap (secondary).
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
from scipy import stats as scipy_stats

Verdict = Literal["reproduced", "not reproduced", "inconclusive", "not computable"]


@dataclass(frozen=True)
class Estimate:
    """A point value with a bootstrap interval (and the replicates it came from).

    ``per_seed`` holds the statistic computed within each seed of the analysis (aligned with
    ``Bootstrap.seeds``; NaN where a seed has no data); empty when it was not computed per seed.
    """

    value: float
    lo: float
    hi: float
    replicates: np.ndarray = field(repr=False, compare=False)
    per_seed: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)

    @classmethod
    def from_replicates(cls, value: float, replicates: np.ndarray, confidence: float,
                        per_seed: np.ndarray | None = None) -> "Estimate":
        """Percentile interval of ``replicates`` at level ``confidence`` (NaN replicates ignored)."""
        reps = np.asarray(replicates, dtype=float)
        seeds = np.zeros(0) if per_seed is None else np.asarray(per_seed, dtype=float)
        finite = reps[np.isfinite(reps)]
        if not np.isfinite(value) or finite.size == 0:
            return cls(float(value), float("nan"), float("nan"), reps, seeds)
        tail = (1.0 - confidence) / 2.0 * 100.0
        lo, hi = np.percentile(finite, [tail, 100.0 - tail])
        return cls(float(value), float(lo), float(hi), reps, seeds)

    @classmethod
    def missing(cls, n_replicates: int, n_seeds: int = 0) -> "Estimate":
        """An estimate for which there is no data."""
        return cls(float("nan"), float("nan"), float("nan"), np.full(n_replicates, np.nan), np.full(n_seeds, np.nan))

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
        self.seeds = np.asarray(seeds)
        # row s selects the units of seed s: a statistic weighted by it is that seed's own value
        self.seed_weights = (units["seed"].to_numpy()[None, :] == self.seeds[:, None]).astype(np.float32)
        seed_draws = rng.multinomial(len(seeds), np.full(len(seeds), 1.0 / len(seeds)), size=self.n_resamples)
        weights = np.zeros((self.n_resamples, len(units)), dtype=np.float32)
        for s_index, seed in enumerate(seeds):
            cols = np.flatnonzero(units["seed"].to_numpy() == seed)
            n_items = len(cols)
            # drawing this seed k times, n_items each, sums to one multinomial of k * n_items draws
            draws = rng.multinomial(seed_draws[:, s_index] * n_items, np.full(n_items, 1.0 / n_items))
            weights[:, cols] = draws
        self.weights = weights

    def missing(self) -> Estimate:
        """An estimate with no data, shaped for this bootstrap."""
        return Estimate.missing(self.n_resamples, len(self.seeds))

    def per_seed(self, estimate: Estimate) -> np.ndarray:
        """The estimate's per-seed values (all NaN when it has none for these seeds)."""
        values = np.asarray(getattr(estimate, "per_seed", np.zeros(0)), dtype=float)
        return values if values.shape == (len(self.seeds),) else np.full(len(self.seeds), np.nan)

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
        keys = pd.MultiIndex.from_arrays([rows["seed"].to_numpy(), rows["item_id"].to_numpy()])
        row_idx = self._index.get_indexer(keys)
        if (row_idx < 0).any():
            bad = keys[row_idx < 0][0]
            raise ValueError(f"unit (seed={bad[0]}, item_id={bad[1]!r}) is not among the bootstrap's units")
        idx, inverse = np.unique(row_idx, return_inverse=True)
        values = rows[columns].to_numpy(dtype=float)
        finite = np.isfinite(values)
        sums = np.zeros((len(idx), len(columns)))
        counts = np.zeros((len(idx), len(columns)))
        np.add.at(sums, inverse, np.where(finite, values, 0.0))
        np.add.at(counts, inverse, finite)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts > 0, sums / counts, np.nan)
        return idx, means

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
            return self.missing()
        keep = np.isfinite(values)
        seed_w = self.seed_weights[:, idx[keep]].astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            reps = (w @ v) / w.sum(axis=1)
            per_seed = (seed_w @ v) / seed_w.sum(axis=1)
        return Estimate.from_replicates(float(v.mean()), reps, self.confidence, per_seed)

    def pearson(self, rows: pd.DataFrame, x: str, y: str) -> Estimate:
        """Pearson correlation of ``x`` and ``y`` over units (weighted in each replicate)."""
        idx, values = self.unit_columns(rows, [x, y])
        if values.size == 0:
            return self.missing()
        keep = np.isfinite(values).all(axis=1)
        idx, values = idx[keep], values[keep]
        if len(values) < 3:
            return self.missing()
        point = _weighted_pearson(np.ones((1, len(values))), values[:, 0], values[:, 1])[0]
        reps = _weighted_pearson(self.weights[:, idx].astype(float), values[:, 0], values[:, 1])
        seed_w = self.seed_weights[:, idx].astype(float)
        per_seed = _weighted_pearson(seed_w, values[:, 0], values[:, 1])
        per_seed[seed_w.sum(axis=1) < 3] = np.nan
        return Estimate.from_replicates(float(point), reps, self.confidence, per_seed)

    def combine(self, function: Callable[..., np.ndarray], *estimates: Estimate) -> Estimate:
        """Apply ``function`` to the point values and, replicate by replicate and seed by seed, to
        the replicates and the per-seed values."""
        with np.errstate(invalid="ignore", divide="ignore"):
            point = function(*(np.float64(e.value) for e in estimates))
            reps = function(*(e.replicates for e in estimates))
            per_seed = function(*(self.per_seed(e) for e in estimates))
        per_seed = np.broadcast_to(np.asarray(per_seed, dtype=float), (len(self.seeds),)).copy()
        return Estimate.from_replicates(float(point), np.asarray(reps, dtype=float), self.confidence, per_seed)


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


# ---- seed-level inference (the confirmatory view) ------------------------------------------------
IntervalMethod = Literal["t", "sign_flip"]
SIGN_FLIP_MAX_SEEDS = 20  # exact enumeration of 2^n sign patterns


@dataclass(frozen=True)
class SeedInference:
    """A claim's effect at the world-seed level: the per-seed effects and what follows from them.

    ``mean`` is the mean of the finite per-seed effects; ``t_*`` the Student t-interval and the
    two-sided one-sample t-test of "mean effect = threshold"; ``sf_*`` the exact sign-flip
    interval and test (infinite bounds where the seeds are too few for the level); ``lo, hi, p``
    the interval and p-value of the chosen method. ``reason`` says why nothing is computable;
    ``caveat`` why a computable row cannot be decided (no spread across seeds).
    """

    effects: np.ndarray
    n: int
    mean: float
    method: str
    t_lo: float
    t_hi: float
    t_p: float
    sf_lo: float
    sf_hi: float
    sf_p: float
    reason: str = ""
    caveat: str = ""

    @property
    def lo(self) -> float:
        return self.t_lo if self.method == "t" else self.sf_lo

    @property
    def hi(self) -> float:
        return self.t_hi if self.method == "t" else self.sf_hi

    @property
    def p(self) -> float:
        return self.t_p if self.method == "t" else self.sf_p

    @property
    def computable(self) -> bool:
        return not self.reason


def t_interval(effects: np.ndarray, confidence: float) -> tuple[float, float]:
    """Student t-interval of the mean of ``effects`` (n >= 2, finite)."""
    x = np.asarray(effects, dtype=float)
    n = len(x)
    if n < 2:
        raise ValueError(f"a t-interval needs at least 2 values, got {n}")
    half = scipy_stats.t.ppf(0.5 + confidence / 2.0, df=n - 1) * x.std(ddof=1) / np.sqrt(n)
    return float(x.mean() - half), float(x.mean() + half)


def t_test(effects: np.ndarray, null: float) -> float:
    """Two-sided p-value of the one-sample t-test of "mean = null".

    NaN when every value is equal: with no spread across seeds the t statistic has no scale, and a
    few identical seeds (e.g. every model at chance) are no proof of an exact effect.
    """
    x = np.asarray(effects, dtype=float)
    if len(x) < 2:
        raise ValueError(f"a t-test needs at least 2 values, got {len(x)}")
    if np.ptp(x) <= 1e-12 * max(1.0, float(np.abs(x).max())):
        return float("nan")
    return float(scipy_stats.ttest_1samp(x, popmean=null).pvalue)


def _subset_sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums and sizes of all 2^n subsets of ``x`` (the empty subset first), built by doubling."""
    n = len(x)
    if n > SIGN_FLIP_MAX_SEEDS:
        raise ValueError(f"the exact sign-flip procedure enumerates 2^n patterns; at most {SIGN_FLIP_MAX_SEEDS} "
                         f"seeds (got {n}): use analysis.seed_interval: t")
    sums, sizes = np.zeros(1), np.zeros(1)
    for value in np.asarray(x, dtype=float):
        sums = np.concatenate([sums, sums + value])
        sizes = np.concatenate([sizes, sizes + 1])
    return sums, sizes


def sign_flip_interval(effects: np.ndarray, confidence: float) -> tuple[float, float]:
    """Exact sign-flip (randomization) interval for the centre of a symmetric distribution.

    The 2^n − 1 means of the non-empty subsets of the n effects cut the line into 2^n intervals,
    each holding the centre with probability 2^-n (Hartigan 1969). With
    ``k = floor((1 − confidence) / 2 · 2^n)``, ``[k-th smallest, k-th largest]`` covers with
    probability ``1 − 2k / 2^n >= confidence``; with ``k = 0`` (fewer than 6 seeds at 95%) the interval
    is the whole line.
    """
    x = np.asarray(effects, dtype=float)
    k = int(np.floor((1.0 - confidence) / 2.0 * 2 ** len(x)))
    if k == 0:
        return float("-inf"), float("inf")
    sums, sizes = _subset_sums(x)
    means = np.sort(sums[sizes > 0] / sizes[sizes > 0])
    return float(means[k - 1]), float(means[-k])


def sign_flip_test(effects: np.ndarray, null: float) -> float:
    """Exact two-sided sign-flip p-value of "centre = null": 2 · min(one-sided p-values), at most 1.

    One-sided p (effect above null) = share of the 2^n sign patterns whose flipped sum of
    ``effects − null`` is at least the observed sum; it inverts to :func:`sign_flip_interval`.
    """
    d = np.asarray(effects, dtype=float) - null
    sums, _ = _subset_sums(d)
    tol = 1e-12 * max(1.0, float(np.abs(d).sum()))
    upper = np.mean(sums <= tol)    # flipping subset S changes the sum by −2·sum(S): at least as large iff sum(S) <= 0
    lower = np.mean(sums >= -tol)
    return float(min(1.0, 2.0 * min(upper, lower)))


def seed_inference(per_seed: np.ndarray, threshold: float, confidence: float = 0.95,
                   method: IntervalMethod = "t") -> SeedInference:
    """Interval and test of a claim's effect from its per-seed effects (NaN seeds are dropped)."""
    if method not in ("t", "sign_flip"):
        raise ValueError(f"seed interval method must be 't' or 'sign_flip', got {method!r}")
    effects = np.asarray(per_seed, dtype=float)
    finite = effects[np.isfinite(effects)]
    nan = float("nan")
    if finite.size == 0:
        return SeedInference(effects, 0, nan, method, nan, nan, nan, nan, nan, nan, "no data for this statistic in this run")
    mean = float(finite.mean())
    if finite.size < 2:
        return SeedInference(effects, 1, mean, method, nan, nan, nan, nan, nan, nan,
                             "one seed: a seed-level interval needs at least 2 world seeds")
    t_lo, t_hi = t_interval(finite, confidence)
    sf_lo, sf_hi = sign_flip_interval(finite, confidence)
    t_p = t_test(finite, threshold)
    caveat = "every seed gives the same effect: no spread to test against (t-test undefined)" if (
        method == "t" and not np.isfinite(t_p)) else ""
    return SeedInference(effects, int(finite.size), mean, method, t_lo, t_hi, t_p,
                         sf_lo, sf_hi, sign_flip_test(finite, threshold), caveat=caveat)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN counts as 1: the family's size stays fixed).

    Sorted ascending, ``p_(i)`` becomes ``max_{j<=i} min(1, (m − j + 1) · p_(j))``.
    """
    p = np.asarray(p_values, dtype=float)
    p = np.where(np.isfinite(p), p, 1.0)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


def seed_verdict(inference: SeedInference, p_value: float, threshold: float,
                 direction: Literal["above", "below"], alpha: float) -> Verdict:
    """The verdict of a claim from its (possibly Holm-adjusted) two-sided p-value.

    ``p_value <= alpha`` → the effect differs from the threshold: ``reproduced`` when the mean lies
    on the claimed side, ``not reproduced`` otherwise; larger p → ``inconclusive``; fewer than two
    seeds with data → ``not computable``. Unadjusted, this is "the interval excludes the threshold".
    """
    if direction not in ("above", "below"):
        raise ValueError(f"direction must be 'above' or 'below', got {direction!r}")
    if not inference.computable:
        return "not computable"
    if not (np.isfinite(p_value) and p_value <= alpha):
        return "inconclusive"
    above = inference.mean > threshold
    return "reproduced" if above == (direction == "above") else "not reproduced"
