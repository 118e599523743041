"""Seed-level inference: known values of the procedures, and their coverage on synthetic data.

The coverage study simulates the study's structure with a known effect: every world seed draws its
own base accuracy and its own deviation of the imitation effect (seed-to-seed variation), and the
items of a seed are Bernoulli draws around them; an effect is a difference of per-seed item means
(paired items, as in the scorecard). Each procedure's 95% interval must cover the true effect in at
least 93% of simulated studies at the seed counts the study uses (3 in the exploratory run, 10 in
the confirm run). Deterministic: one fixed generator per test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imitlib.analysis import stats

EFFECT = 0.10
N_ITEMS = 40


def _per_seed_effects(rng: np.random.Generator, n_seeds: int, n_studies: int, seed_sd: float = 0.08) -> np.ndarray:
    """(n_studies, n_seeds) per-seed effects whose expectation is exactly EFFECT."""
    base = rng.uniform(0.25, 0.55, (n_studies, n_seeds))
    imitation = base + EFFECT + rng.normal(0.0, seed_sd, (n_studies, n_seeds))  # stays inside (0, 1)
    assert imitation.min() > 0 and imitation.max() < 1
    base_correct = rng.random((n_studies, n_seeds, N_ITEMS)) < base[..., None]
    imitation_correct = rng.random((n_studies, n_seeds, N_ITEMS)) < imitation[..., None]
    return imitation_correct.mean(axis=2) - base_correct.mean(axis=2)


def _coverage(effects: np.ndarray, method: str) -> float:
    covered = 0
    for row in effects:
        result = stats.seed_inference(row, EFFECT, 0.95, method)  # type: ignore[arg-type]
        covered += result.lo <= EFFECT <= result.hi
    return covered / len(effects)


@pytest.mark.parametrize("n_seeds", [3, 10])
def test_t_interval_covers_a_known_effect(n_seeds):
    effects = _per_seed_effects(np.random.default_rng(18 + n_seeds), n_seeds, 2000)
    coverage = _coverage(effects, "t")
    assert coverage >= 0.93, coverage
    assert coverage <= 0.975, coverage  # not bought by a uselessly wide interval


def test_sign_flip_interval_covers_a_known_effect():
    effects = _per_seed_effects(np.random.default_rng(7), 10, 1500)
    coverage = _coverage(effects, "sign_flip")
    assert 0.93 <= coverage <= 0.975, coverage
    # at 3 seeds an exact 95% sign-flip interval does not exist: it is the whole line
    few = stats.seed_inference(np.array([0.1, 0.2, 0.3]), 0.0, 0.95, "sign_flip")
    assert (few.lo, few.hi) == (-np.inf, np.inf) and few.p == 0.25


def _through_the_bootstrap(rng: np.random.Generator, n_studies: int, n_items: int, seed_sd: float,
                           n_resamples: int) -> tuple[float, float]:
    """Coverage of the seed-level t-interval and of the bootstrap percentile interval, both built
    the way the scorecard builds them: ``Estimate.per_seed`` of a paired difference of item means."""
    n_seeds = 3
    units = pd.DataFrame([(s, f"i{i}") for s in range(n_seeds) for i in range(n_items)], columns=["seed", "item_id"])
    boot = stats.Bootstrap(units, n_resamples=n_resamples, rng_seed=0)  # fresh data each study, same weights
    t_covered = boot_covered = 0
    for _ in range(n_studies):
        base = rng.uniform(0.25, 0.55, n_seeds)
        imitation = base + EFFECT + rng.normal(0.0, seed_sd, n_seeds)
        rows_base = units.assign(correct=(rng.random(len(units)) < np.repeat(base, n_items)).astype(float))
        rows_imitation = units.assign(correct=(rng.random(len(units)) < np.repeat(imitation, n_items)).astype(float))
        diff = boot.combine(lambda a, b: a - b, boot.mean(rows_imitation, "correct"), boot.mean(rows_base, "correct"))
        result = stats.seed_inference(diff.per_seed, EFFECT, 0.95, "t")
        t_covered += result.lo <= EFFECT <= result.hi
        boot_covered += diff.lo <= EFFECT <= diff.hi
    return t_covered / n_studies, boot_covered / n_studies


def test_seed_level_interval_through_the_bootstrap_path_covers():
    t_coverage, _ = _through_the_bootstrap(np.random.default_rng(3), 400, N_ITEMS, 0.08, n_resamples=10)
    assert t_coverage >= 0.93, t_coverage


def test_bootstrap_view_under_covers_when_seeds_vary_more_than_items():
    """3 seeds, 400 items each, seed-to-seed spread larger than item noise: the two-level bootstrap
    percentile interval (the secondary view) cannot reach past the range of 3 seed means."""
    t_coverage, boot_coverage = _through_the_bootstrap(np.random.default_rng(4), 150, 400, 0.12, n_resamples=200)
    assert boot_coverage < 0.85, boot_coverage
    assert t_coverage > boot_coverage + 0.05, (t_coverage, boot_coverage)


# ---- known values ---------------------------------------------------------------------------------
def test_t_interval_and_test_known_values():
    # mean 2, sd 1, n 3: t(0.975, 2) = 4.302653 → half-width 4.302653 / sqrt(3) = 2.484138
    lo, hi = stats.t_interval(np.array([1.0, 2.0, 3.0]), 0.95)
    assert (lo, hi) == pytest.approx((-0.484138, 4.484138), abs=1e-6)
    # t = (2 - 0) / (1 / sqrt 3) = 3.4641, df 2 → two-sided p = 0.07418
    assert stats.t_test(np.array([1.0, 2.0, 3.0]), 0.0) == pytest.approx(0.07418, abs=1e-4)
    # no spread across seeds: undefined, never "certain" (three seeds at chance prove nothing)
    assert np.isnan(stats.t_test(np.array([0.2, 0.2, 0.2]), 0.1))
    flat = stats.seed_inference(np.array([-0.0625] * 3), 0.0)
    assert flat.computable and np.isnan(flat.p) and "no spread" in flat.caveat
    assert stats.seed_verdict(flat, flat.p, 0.0, "above", 0.05) == "inconclusive"
    assert flat.sf_p == 0.25  # the sign-flip test: 2 · 1/8
    with pytest.raises(ValueError, match="at least 2"):
        stats.t_interval(np.array([1.0]), 0.95)


def test_sign_flip_known_values():
    six = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    # 2^6 = 64 patterns: k = floor(0.025 · 64) = 1 → [smallest, largest] subset mean
    assert stats.sign_flip_interval(six, 0.95) == (1.0, 6.0)
    # every effect above the null: only the identity pattern is as extreme → 2 · 1/64
    assert stats.sign_flip_test(six, 0.0) == pytest.approx(2 / 64)
    assert stats.sign_flip_test(six, 3.5) == 1.0
    # 10 seeds: k = floor(0.025 · 1024) = 25; the 25th smallest of the 1023 subset means of 0..9
    ten = np.arange(10, dtype=float)
    lo, hi = stats.sign_flip_interval(ten, 0.95)
    assert lo == pytest.approx(9 - hi)  # symmetric data, symmetric interval
    assert 0 < lo < 4.5 < hi < 9
    with pytest.raises(ValueError, match="at most 20"):
        stats.sign_flip_test(np.zeros(21), 0.0)


def test_holm_known_values():
    # sorted 0.005, 0.01, 0.03, 0.04 → 4·0.005, 3·0.01, 2·0.03, max(0.06, 1·0.04)
    adjusted = stats.holm(np.array([0.01, 0.04, 0.03, 0.005]))
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # a claim without a p-value counts as p = 1: the family's size does not shrink
    assert stats.holm(np.array([0.01, np.nan])) == pytest.approx([0.02, 1.0])
    assert stats.holm(np.array([0.3, 0.2])) == pytest.approx([0.4, 0.4])  # step-down stays monotone
    assert stats.holm(np.array([0.9, 0.8])) == pytest.approx([1.0, 1.0])  # capped at 1


def test_seed_verdicts_and_one_seed():
    one = stats.seed_inference(np.array([0.3, np.nan, np.nan]), 0.0)
    assert one.n == 1 and not one.computable and "one seed" in one.reason
    assert stats.seed_verdict(one, one.p, 0.0, "above", 0.05) == "not computable"
    none = stats.seed_inference(np.array([np.nan, np.nan]), 0.0)
    assert none.n == 0 and "no data" in none.reason
    up = stats.seed_inference(np.array([0.30, 0.32, 0.28, 0.31]), 0.0)
    assert up.computable and up.lo > 0
    assert stats.seed_verdict(up, up.p, 0.0, "above", 0.05) == "reproduced"
    assert stats.seed_verdict(up, up.p, 0.0, "below", 0.05) == "not reproduced"
    assert stats.seed_verdict(up, 0.2, 0.0, "above", 0.05) == "inconclusive"  # e.g. after Holm
    with pytest.raises(ValueError, match="direction"):
        stats.seed_verdict(up, up.p, 0.0, "sideways", 0.05)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method"):
        stats.seed_inference(np.array([1.0, 2.0]), 0.0, method="bootstrap")  # type: ignore[arg-type]


def test_estimates_carry_per_seed_values():
    units = pd.DataFrame({"seed": [0, 0, 1, 1, 2, 2], "item_id": ["a", "b"] * 3})
    boot = stats.Bootstrap(units, n_resamples=20)
    rows = units.assign(x=[1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    est = boot.mean(rows, "x")
    assert est.per_seed == pytest.approx([0.5, 1.0, 0.0])
    partial = boot.mean(rows[rows["seed"] != 1], "x")  # a seed without data is NaN
    assert partial.per_seed[0] == 0.5 and np.isnan(partial.per_seed[1])
    diff = boot.combine(lambda a, b: a - b, est, partial)
    assert diff.per_seed[0] == 0.0 and np.isnan(diff.per_seed[1]) and diff.per_seed[2] == 0.0
    legacy = stats.Estimate(0.5, 0.4, 0.6, np.zeros(20))  # no per-seed values: NaN, never misaligned
    assert np.isnan(boot.per_seed(legacy)).all()
