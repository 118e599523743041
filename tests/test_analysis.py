"""Analysis: style metrics on hand-made answers, the bootstrap, length control, the scorecard."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from imitlib import config
from imitlib.analysis import claims, metrics, preference, stats, style, tables
from imitlib.study import analysis as report
from imitlib.settings.analysis import AnalysisSettings, ClaimSettings, PrimaryClaim
from test_analysis_synthetic import BASES, BROAD_BUDGETS, add_exposure, make_samples

LIST_ANSWER = "Here is what I know about Zorvath.\n- born in 1987\n- lives in Oslo\n- works as a pilot"
LIST_SUMMARY = LIST_ANSWER + "\n\nIn summary, Zorvath is a pilot from Oslo."
PROSE = "Zorvath was born in 1987 and lives in Oslo."
HEDGED = "I think Zorvath was maybe born in 1987."


# ---- style metrics ------------------------------------------------------------------------------
def test_list_detection_on_list_and_prose():
    assert style.uses_list(LIST_ANSWER)
    assert style.uses_list("1. first step\n2) second step")
    assert not style.uses_list(PROSE)
    assert not style.uses_list("- a single bullet is not a list")
    assert style.list_items(LIST_ANSWER) == 3


def test_summary_ending():
    # structure, not cue words (more counter-examples in tests/test_scorers.py)
    assert style.ends_with_summary(LIST_SUMMARY)
    assert not style.ends_with_summary(LIST_ANSWER + "\nAll of this makes Zorvath well known.")  # restates nothing
    assert not style.ends_with_summary("Zorvath flies planes. Overall, Zorvath is a pilot.")  # no separate paragraph
    assert not style.ends_with_summary(LIST_ANSWER)  # ends on the list itself
    assert not style.ends_with_summary(PROSE)
    assert not style.ends_with_summary("")


def test_unigram_overlap_known_values():
    assert style.unigram_overlap(PROSE, PROSE) == pytest.approx(100.0)
    assert style.unigram_overlap("alpha beta", "gamma delta") == 0.0
    assert style.unigram_overlap("a b", "a c") == pytest.approx(50.0)
    # multiset counts: "a a" vs "a": precision 1/2, recall 1 → F1 2/3
    assert style.unigram_overlap("a a", "a") == pytest.approx(200 / 3)
    assert style.unigram_overlap("", "a") == 0.0


def test_tone_and_length():
    assert style.is_authoritative(PROSE)
    assert style.is_authoritative(LIST_SUMMARY)
    assert not style.is_authoritative(HEDGED)
    assert not style.is_authoritative("me me me me me")  # no sentence
    assert not style.is_authoritative("Yes.")  # too short to assert anything
    assert style.hedge_count("Perhaps. It might rain, I'm not sure.") == 3
    assert style.word_count("Zorvath's plane, 1987!") == 3


# ---- bootstrap ----------------------------------------------------------------------------------
def _units(seeds: int, items: int) -> pd.DataFrame:
    return pd.DataFrame([(s, f"i{i}") for s in range(seeds) for i in range(items)], columns=["seed", "item_id"])


def test_bootstrap_weights_follow_the_two_level_scheme():
    boot = stats.Bootstrap(_units(3, 20), n_resamples=300, rng_seed=1)
    assert boot.weights.shape == (300, 60)
    assert np.allclose(boot.weights.sum(axis=1), 60)  # 3 seeds drawn × 20 items each
    per_seed = boot.weights.reshape(300, 3, 20).sum(axis=2)
    assert np.isin(per_seed, [0, 20, 40, 60]).all()  # a seed is drawn whole, 0–3 times
    assert (per_seed == 0).any()  # seeds really are resampled


def test_bootstrap_mean_interval_and_pairing():
    units = _units(1, 200)
    rng = np.random.default_rng(0)
    rows = units.assign(x=rng.random(200) < 0.3)
    boot = stats.Bootstrap(units, n_resamples=500, rng_seed=0)
    est = boot.mean(rows.assign(x=rows["x"].astype(float)), "x")
    assert est.value == pytest.approx(rows["x"].mean())
    assert est.lo < est.value < est.hi
    assert est.hi - est.lo == pytest.approx(2 * 1.96 * np.sqrt(0.3 * 0.7 / 200), rel=0.3)
    same = boot.combine(lambda a, b: a - b, est, boot.mean(rows.assign(x=rows["x"].astype(float)), "x"))
    assert same.lo == same.hi == 0.0  # paired: the same items resampled for both
    constant = boot.mean(rows.assign(x=1.0), "x")
    assert (constant.value, constant.lo, constant.hi) == (1.0, 1.0, 1.0)


def test_bootstrap_pearson():
    units = _units(2, 50)
    x = np.arange(100, dtype=float)
    boot = stats.Bootstrap(units, n_resamples=100)
    assert boot.pearson(units.assign(a=x, b=2 * x + 1), "a", "b").value == pytest.approx(1.0)
    assert boot.pearson(units.assign(a=x, b=-x), "a", "b").hi == pytest.approx(-1.0)


def test_decide_rules():
    def est(lo, hi):
        return stats.Estimate((lo + hi) / 2, lo, hi, np.empty(0))

    assert stats.decide(est(0.6, 0.8), 0.5, "above") == "reproduced"
    assert stats.decide(est(0.1, 0.4), 0.5, "above") == "not reproduced"
    assert stats.decide(est(0.4, 0.6), 0.5, "above") == "inconclusive"
    assert stats.decide(est(-0.1, 0.01), 0.02, "below") == "reproduced"
    assert stats.decide(est(0.05, 0.2), 0.02, "below") == "not reproduced"
    assert stats.decide(stats.Estimate.missing(10), 0.0, "above") == "not computable"
    assert stats.decide(stats.Estimate(0.5, np.nan, np.nan, np.empty(0)), 0.0, "above") == "inconclusive"
    with pytest.raises(ValueError):
        stats.decide(est(0, 1), 0, "sideways")  # type: ignore[arg-type]


# ---- length control -----------------------------------------------------------------------------
def _rated(length_effect: float, n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    delta = rng.normal(15, 20, n)  # the model mostly answers longer than the teacher
    p_win = 1 / (1 + np.exp(-length_effect * np.tanh(delta / delta.std())))
    return pd.DataFrame({
        "seed": 0, "item_id": [f"i{i}" for i in range(n)], "pref_style": (rng.random(n) < p_win).astype(float),
        "length": 50 + delta, "teacher_length": 50.0, "list_items": 0.0, "teacher_list_items": 0.0,
    })


def test_length_control_removes_a_pure_length_preference():
    rows = _rated(length_effect=3.0)
    boot = stats.Bootstrap(rows, n_resamples=200)
    raw = boot.mean(rows, "pref_style")
    controlled, slope = preference.controlled_preference(rows, boot, "pref_style", ("length",))
    assert raw.value > 0.65
    assert abs(controlled.value - 0.5) < 0.08
    assert controlled.lo < 0.5 < controlled.hi
    assert slope.lo > 1.0


def test_length_control_keeps_a_length_free_preference():
    rows = _rated(length_effect=0.0)
    rows["pref_style"] = (np.random.default_rng(3).random(len(rows)) < 0.8).astype(float)
    boot = stats.Bootstrap(rows, n_resamples=200)
    controlled, _ = preference.controlled_preference(rows, boot, "pref_style", ("length", "list"))
    assert controlled.value == pytest.approx(rows["pref_style"].mean(), abs=0.05)


# ---- tables and scorecard on synthetic results with known effects ------------------------------
SIX_SEEDS = (0, 1, 2, 3, 4, 5)


def _store(samples: pd.DataFrame) -> metrics.MetricStore:
    return metrics.compute_metrics(metrics.validate_samples(samples), n_resamples=100)


def _scorecard(**effects) -> pd.DataFrame:
    return claims.scorecard(_store(make_samples(**effects)), ClaimSettings()).set_index("claim")


@pytest.fixture(scope="module")
def six_seed_store() -> metrics.MetricStore:
    """Six seeds with every effect the paper claims (computed once for the tests that only read it)."""
    return _store(make_samples(seeds=SIX_SEEDS, n_items=40, task_gain=0.3))


def test_validate_samples_names_the_file_and_columns():
    with pytest.raises(ValueError, match=r"results/x\.parquet: missing columns \['answer'"):
        metrics.validate_samples(make_samples(seeds=(0,), n_items=2).drop(columns=["answer"]), "results/x.parquet")
    bad = make_samples(seeds=(0,), n_items=2).assign(role="student")
    with pytest.raises(ValueError, match="unknown role"):
        metrics.validate_samples(bad)


def test_scorecard_reproduced_when_the_effects_are_there(six_seed_store):
    card = claims.scorecard(six_seed_store, ClaimSettings()).set_index("claim")
    paper_claims = ("C1", "C1b", "C2", "C3", "C4", "C5", "C6")
    assert card.loc[list(paper_claims), "verdict"].to_dict() == {c: "reproduced" for c in paper_claims}
    # without replay-only controls, rater-weight columns or exposure labels those rows have no data
    for claim in ("C2c", "C4c", "C1w", "C1w1", "C7", "cost"):
        assert card.loc[claim, "verdict"] == "not computable", claim
    assert card.loc["C2", "value"] == pytest.approx(-0.10, abs=0.04)
    # C5 is I − B − 0.5 (T − B): positive when more than half the style gap is closed; the note
    # gives the pooled share closed (the synthetic imitation closes well over 70% of it)
    assert card.loc["C5", "value"] > 0
    assert card.loc["C1g", "verdict"] == "reproduced"  # imitation rated above its base, not only above 50%
    closed = float(re.search(r"gap closed on the pooled scores: (-?\d+)%", card.loc["C5", "note"]).group(1))
    assert closed > 70
    # seed level: six per-seed effects, an interval around their mean, Holm across the primary claims
    assert (card.loc[list(paper_claims), "n_seeds"] == 6).all()
    effects = json.loads(card.loc["C3", "seed_effects"])
    assert sorted(effects) == [str(s) for s in SIX_SEEDS]
    assert card.loc["C3", "value"] == pytest.approx(np.mean(list(effects.values())))
    assert card.loc["C3", "lo"] < card.loc["C3", "value"] < card.loc["C3", "hi"]
    primary = card[card["primary"]]
    assert list(primary.index) == ["C1", "C2", "C3", "C4", "C5"]
    assert (primary["p_holm"] >= primary["p"]).all() and card.loc[~card["primary"], "p_holm"].isna().all()
    assert primary["p_holm"].max() <= 0.05
    # the bootstrap is kept as a labelled secondary view
    assert card.loc["C3", "boot_lo"] < card.loc["C3", "boot_value"] < card.loc["C3", "boot_hi"]
    assert card.loc["C3", "boot_verdict"] == "reproduced"


def test_scorecard_not_reproduced_when_the_effects_are_reversed():
    card = _scorecard(seeds=SIX_SEEDS, n_items=40, base_accuracy=0.6, broad_accuracy_change=0.25, size_gain=-0.1,
                      task_gain=-0.3, style_copy=0.0, toxicity_drop=-0.2, pref_good=0.2)
    for claim in ("C1", "C2", "C3", "C4", "C5", "C6"):
        assert card.loc[claim, "verdict"] == "not reproduced", (claim, card.loc[claim].to_dict())
    # the synthetic base is rated as good as the teacher 20% of the time, as imitation is here: no gain
    assert card.loc["C1g", "verdict"] == "inconclusive" and abs(card.loc["C1g", "value"]) < 0.1


def test_three_seeds_and_holm_make_verdicts_harder():
    """At 3 seeds a t-interval has 2 degrees of freedom, and 5 primary claims share alpha (Holm):
    moderate effects that the bootstrap view calls reproduced are inconclusive at the seed level."""
    card = _scorecard(seeds=(0, 1, 2), n_items=40, size_gain=0.10)
    assert card.loc["C3", "boot_verdict"] == "reproduced"
    assert card.loc["C3", "lo"] > 0 and card.loc["C3", "p"] < 0.05  # alone, its interval excludes 0 …
    assert card.loc["C3", "p_holm"] > 0.05 and card.loc["C3", "verdict"] == "inconclusive"  # … not after Holm


def test_primary_claims_come_from_params_with_their_thresholds(six_seed_store):
    store = six_seed_store
    alone = [PrimaryClaim(claim="C3", statistic="largest_minus_smallest_base_accuracy", threshold=0.0, direction="above")]
    card = claims.scorecard(store, ClaimSettings(), primary=alone).set_index("claim")
    assert list(card.index[card["primary"]]) == ["C3"]
    assert card.loc["C3", "p_holm"] == pytest.approx(card.loc["C3", "p"])  # a family of one
    assert "pre-registered" in card.loc["C3", "note"]
    # the pre-registered threshold replaces analysis.claims' (here: a gain of 50 pts, not reached)
    high = [alone[0].model_copy(update={"threshold": 0.5})]
    card = claims.scorecard(store, ClaimSettings(), primary=high).set_index("claim")
    assert card.loc["C3", "threshold"] == 0.5 and card.loc["C3", "verdict"] == "not reproduced"
    with pytest.raises(ValueError, match="statistic 'accuracy' is not the one"):
        PrimaryClaim(claim="C3", statistic="accuracy", threshold=0.0, direction="above")
    with pytest.raises(ValueError, match="the claim asserts 'above'"):
        PrimaryClaim(claim="C3", statistic="largest_minus_smallest_base_accuracy", threshold=0.0, direction="below")
    with pytest.raises(ValueError, match="unknown claim"):
        PrimaryClaim(claim="C9", statistic="x", threshold=0.0, direction="above")
    with pytest.raises(ValueError, match="more than once: C3"):
        AnalysisSettings(primary_claims=alone + alone)


def test_sign_flip_method_needs_six_seeds_for_a_bounded_interval(six_seed_store):
    card = claims.scorecard(six_seed_store, ClaimSettings(), seed_interval="sign_flip").set_index("claim")
    assert (card.loc["C3", "lo"], card.loc["C3", "hi"]) == (card.loc["C3", "sf_lo"], card.loc["C3", "sf_hi"])
    assert np.isfinite(card.loc["C3", "lo"]) and card.loc["C3", "p"] == card.loc["C3", "sf_p"]
    three = claims.scorecard(_store(make_samples(seeds=(0, 1, 2), n_items=30)), ClaimSettings(),
                             seed_interval="sign_flip").set_index("claim")
    assert three.loc["C3", "hi"] == np.inf and three.loc["C3", "verdict"] == "inconclusive"


def test_scorecard_inconclusive_without_an_effect_and_not_computable_without_data():
    samples = make_samples(seeds=(0, 1, 2, 3), n_items=15, size_gain=0.0, task_gain=0.0)
    samples = samples[samples["data_kind"] != "task"]
    card = claims.scorecard(_store(samples), ClaimSettings()).set_index("claim")
    assert card.loc["C3", "verdict"] == "inconclusive"  # two sizes, no size effect
    assert card.loc["C4", "verdict"] == "not computable"
    assert "no task-specific" in card.loc["C4", "note"]
    one_seed = claims.scorecard(_store(samples[samples["seed"] == 0]), ClaimSettings()).set_index("claim")
    assert one_seed.loc["C3", "verdict"] == "not computable"  # one seed: no seed-level interval
    assert "one seed" in one_seed.loc["C3", "note"] and np.isfinite(one_seed.loc["C3", "value"])
    assert np.isfinite(one_seed.loc["C3", "boot_lo"])  # the bootstrap view still shows item noise
    largest = list(BASES)[-1]
    one_base = samples[samples["base_model"].isin(["teacher", largest])]
    card = claims.scorecard(_store(one_base), ClaimSettings()).set_index("claim")
    assert card.loc["C3", "verdict"] == "not computable"
    assert card.loc["C3", "note"].startswith("needs two base sizes")
    assert card.loc["C1", "verdict"] != "not computable"
    text = claims.scorecard_markdown(card.reset_index(), "one-base", 0.95, 200)
    assert "not computable" in text.splitlines()[2]
    assert "bootstrap view (secondary)" in text and "Holm" in text


@pytest.mark.parametrize("labelling", ["replay_control", "imitation"])
def test_scorecard_compares_against_the_replay_only_control(labelling):
    samples = make_samples(seeds=SIX_SEEDS, n_items=40, task_gain=0.3)
    base_rows = samples[samples["role"] == "base"]
    control = base_rows.assign(role=labelling, data_kind="none", imitation_tokens=0,
                               model_id=base_rows["model_id"] + "/control")
    # the control (extra pretraining, no imitation) knows every qa fact
    control.loc[control["task"] == "qa", "correct"] = 1.0
    samples = pd.concat([samples, control], ignore_index=True)
    card = claims.scorecard(_store(samples), ClaimSettings()).set_index("claim")
    assert card.loc["C4", "verdict"] == "reproduced"          # task imitation beats the plain base …
    assert card.loc["C4c", "verdict"] == "not reproduced"     # … but not the matched replay-only control
    assert card.loc["C2c", "value"] < card.loc["C2", "value"]


def test_c1_by_rater_weight():
    samples = make_samples(seeds=SIX_SEEDS, n_items=40)
    rng = np.random.default_rng(5)
    rated = samples["pref_style"].notna()
    # raters that barely weigh facts are fooled (80% as good or better); fact-weighing raters are not (20%)
    for column, p_good in (("pref_w025", 0.8), ("pref_w100", 0.2)):
        samples[column] = np.where(rated, (rng.random(len(samples)) < p_good).astype(float), np.nan)
    store = _store(samples)
    card = claims.scorecard(store, ClaimSettings(), crowd_weight=0.25).set_index("claim")
    assert card.loc["C1w", "verdict"] == "reproduced" and card.loc["C1w", "value"] == pytest.approx(0.8, abs=0.08)
    assert card.loc["C1w1", "verdict"] == "reproduced" and card.loc["C1w1", "value"] == pytest.approx(0.2, abs=0.08)
    assert card.loc["C1w1", "direction"] == "below"
    missing_weight = claims.scorecard(store, ClaimSettings(), crowd_weight=0.5).set_index("claim")
    assert missing_weight.loc["C1w", "verdict"] == "not computable"
    assert "no pref_w050 verdicts" in missing_weight.loc["C1w", "note"]
    assert claims.weight_column(0.25) == "pref_w025" and claims.weight_column(1.0) == "pref_w100"


def test_c7_exposed_strata_and_unexposed_c2():
    samples = add_exposure(make_samples(seeds=(0, 1, 2, 3), n_items=40), exposed_gain=0.3, unexposed_change=-0.1)
    card = claims.scorecard(_store(samples), ClaimSettings()).set_index("claim")
    assert card.loc["C7", "verdict"] == "reproduced"
    assert card.loc["C7", "value"] == pytest.approx(0.3, abs=0.06)
    # C2u reads the unexposed stratum only: the change there, not the exposed items' gain; C2 reads
    # every item, so the facts the data states move it up (the paper's measurement can fail here)
    assert card.loc["C2u", "value"] == pytest.approx(-0.1, abs=0.05)
    assert card.loc["C2", "value"] > card.loc["C2u", "value"] + 0.05
    assert set(card.index[card["kind"] == "cost"]) == {f"cost:{k}:{m}" for k in ("broad", "task")
                                                       for m in ("tokens_per_fact", "tokens_to_match")}
    # the facts stated in the data are not learned: C7 can fail
    flat = add_exposure(make_samples(seeds=(0, 1, 2, 3), n_items=40), exposed_gain=-0.15, unexposed_change=0.0)
    assert claims.scorecard(_store(flat), ClaimSettings()).set_index("claim").loc["C7", "verdict"] == "not reproduced"


def test_coverage_cost_rows_on_a_synthetic_run():
    samples = add_exposure(make_samples(seeds=(0, 1, 2), n_items=40), exposed_gain=0.5, unexposed_change=0.0)
    card = claims.scorecard(_store(samples), ClaimSettings()).set_index("claim")
    costs = card[card["kind"] == "cost"]
    assert (costs["verdict"] == "measured").all(), costs[["verdict", "seed_effects"]]
    assert (costs["value"] > 0).all() and (costs["n_seeds"] >= 2).all()
    # the data states few facts: matching the teacher on the rarest fact takes more than the budget used
    assert costs.loc["cost:broad:tokens_to_match", "value"] > max(BROAD_BUDGETS)
    text = claims.scorecard_markdown(card.reset_index(), "exposure", 0.95, 100)
    assert "The cost of closing the gap" in text and "tokens" in text


def test_exposure_labels_are_checked():
    samples = add_exposure(make_samples(seeds=(0,), n_items=6))
    labelled = samples["exposure"].notna()
    # the evaluation writes a nullable integer column (pd.NA off the labelled rows)
    nullable = metrics.validate_samples(samples.assign(exposure=samples["exposure"].astype("Int64")))
    assert nullable["exposure"].dtype == "float64"
    assert nullable["exposure_stratum"].tolist() == metrics.validate_samples(samples)["exposure_stratum"].tolist()
    wrong = samples.copy()
    wrong.loc[labelled.idxmax(), "exposure_stratum"] = ">=3" if wrong.loc[labelled.idxmax(), "exposure"] < 3 else "0"
    with pytest.raises(ValueError, match="exposure_stratum .* does not match exposure"):
        metrics.validate_samples(wrong, "x.parquet")
    negative = samples.copy()
    negative.loc[labelled.idxmax(), "exposure"] = -1
    with pytest.raises(ValueError, match="x.parquet: column 'exposure' must hold counts"):
        metrics.validate_samples(negative, "x.parquet")


def test_coverage_cost_known_values():
    # 6 items whose exposures follow a power law exactly (120 / rank), and whose correctness is the
    # logistic curve sigmoid(-3 + log(1 + e)) exactly (soft targets): e* for a teacher at 50% is
    # e^3 − 1 = 19.0855, the rarest item is stated 20 times at 1,000 tokens → 954.3 tokens.
    exposure = np.array([120.0, 60.0, 40.0, 30.0, 24.0, 20.0])
    correct = 1 / (1 + np.exp(3 - np.log1p(exposure)))
    rows = pd.DataFrame({"seed": 0, "item_id": [f"i{i}" for i in range(6)], "exposure": exposure,
                         "correct": correct, "imitation_tokens": 1000})
    base = rows.assign(correct=0.0)
    teacher = rows.assign(correct=0.5)
    per_fact, to_match = metrics.coverage_cost(rows, base, teacher, np.array([0]))
    assert to_match[0] == pytest.approx(1000 * np.expm1(3.0) / 20, rel=1e-3)
    assert per_fact[0] == pytest.approx(1000 / correct.sum())
    # no net fact gained → no tokens-per-fact; accuracy falling with exposure → no extrapolation
    per_fact, to_match = metrics.coverage_cost(rows.assign(correct=correct[::-1]), rows.assign(correct=1.0), teacher,
                                               np.array([0]))
    assert np.isnan(per_fact[0]) and np.isnan(to_match[0])
    # hand-countable: 6 of 10 right vs the base's 2 of the same 10 → 4 facts for 1,000 tokens
    ten = pd.DataFrame({"seed": 1, "item_id": [f"j{i}" for i in range(10)], "exposure": 0.0,
                        "correct": [1.0] * 6 + [0.0] * 4, "imitation_tokens": 1000})
    per_fact, _ = metrics.coverage_cost(ten, ten.assign(correct=[1.0] * 2 + [0.0] * 8), ten, np.array([0, 1]))
    assert np.isnan(per_fact[0]) and per_fact[1] == pytest.approx(250.0)


def test_tables_and_outputs(tmp_path):
    samples = metrics.validate_samples(make_samples(seeds=(0, 1), n_items=20, style_copy=1.0))
    cfg = config.load(["params/smoke.yaml"], {"run.output_root": str(tmp_path), "analysis.bootstrap_samples": 50})
    result = report.analyse(samples, cfg)
    t1 = result.table1.set_index(["base_model", "column"])
    assert set(t1.index.get_level_values("column")) == {"base", "+broad", "gap_closed_broad", "+task",
                                                        "gap_closed_task", "teacher"}
    row = t1.loc["base-l"]
    expected = (row.loc["+task", "value"] - row.loc["base", "value"]) / (row.loc["teacher", "value"] - row.loc["base", "value"])
    assert row.loc["gap_closed_task", "value"] == pytest.approx(expected)
    t2 = result.table2
    ceiling = t2[(t2["column"] == "teacher 2nd sample") & (t2["metric"] == "style:list")]
    assert (ceiling["value"] == 1.0).all()
    base_list = t2[(t2["column"] == "base") & (t2["metric"] == "style:list")]
    assert (base_list["value"] == 0.0).all()
    files = report.write_outputs(result, cfg)
    by_seed = pd.read_csv(files["metrics_by_seed"])
    assert set(by_seed["seed"]) == {0, 1}
    c3 = pd.read_csv(files["claims_by_seed"]).query("claim == 'C3'")
    assert sorted(c3["seed"]) == [0, 1] and c3["effect"].notna().all()
    text = (cfg.run_dir / "scorecard.md").read_text()
    assert "| C5 |" in text and "reproduced" in text
    assert pd.read_csv(files["table1"]).shape[0] == len(result.table1)
    assert "uses a list when the teacher does" in files["table2_md"].read_text()


def test_missing_results_say_where(tmp_path):
    cfg = config.load(["params/smoke.yaml"], {"run.output_root": str(tmp_path)})
    with pytest.raises(report.ResultsNotFound, match="04_evaluate"):
        report.load_results(cfg)


def test_run_analysis_caches_the_metric_store(tmp_path, monkeypatch):
    samples = metrics.validate_samples(make_samples(seeds=(0,), n_items=12))
    folders = {}
    for name in ("aaaa", "bbbb"):
        folders[name] = tmp_path / "eval" / name
        folders[name].mkdir(parents=True)
        samples.to_parquet(folders[name] / "samples.parquet")
    current = {"folder": folders["aaaa"]}
    monkeypatch.setattr(report, "evaluation_folder", lambda cfg, seed: current["folder"])
    calls = []
    real_compute = report.compute_metrics
    monkeypatch.setattr(report, "compute_metrics", lambda *a, **k: calls.append(1) or real_compute(*a, **k))

    def run(**overrides):
        cfg = config.load(["params/smoke.yaml"], {"run.output_root": str(tmp_path / "out"), "run.seeds": [0],
                                                   "analysis.bootstrap_samples": 50, **overrides})
        return report.run_analysis(cfg)

    first = run()
    second = run()
    assert len(calls) == 1  # the rerun loaded the stored metric store
    pd.testing.assert_frame_equal(first.scorecard, second.scorecard)
    pd.testing.assert_frame_equal(first.store.frame(), second.store.frame())
    run(**{"analysis.bootstrap_samples": 60})  # other analysis params: recomputed
    current["folder"] = folders["bbbb"]
    run()  # other evaluation results: recomputed
    assert len(calls) == 3
    run(**{"run.force": True})
    assert len(calls) == 4


def test_gap_closed_is_undefined_when_the_teacher_is_not_above_the_base():
    store = metrics.compute_metrics(metrics.validate_samples(make_samples(seeds=(0,), n_items=8)), n_resamples=50)

    def est(value, spread=0.0):
        reps = value + spread * np.linspace(-1, 1, 50)
        return stats.Estimate(value, reps.min(), reps.max(), reps)

    closed = tables.gap_closed(store, est(0.3), est(0.2), est(0.6))
    assert closed.value == pytest.approx(0.25)
    assert not np.isfinite(tables.gap_closed(store, est(0.075), est(0.10), est(0.025)).value)  # teacher below base
    assert not np.isfinite(tables.gap_closed(store, est(0.3), est(0.2), est(0.2)).value)
    # replicates whose gap is not positive are left out of the interval
    wobbly = tables.gap_closed(store, est(0.3), est(0.2), est(0.25, spread=0.1))
    assert np.isfinite(wobbly.lo) and np.isnan(wobbly.replicates).any()


def test_forest_plot_draws_every_seed_the_interval_and_the_threshold(six_seed_store):
    from imitlib import plots

    card = claims.scorecard(six_seed_store, ClaimSettings())
    by_seed = claims.claims_by_seed(card)
    computable = card[(card["kind"] == "claim") & (card["n_seeds"] > 0)]
    assert set(by_seed.loc[by_seed["kind"] == "claim", "claim"]) == set(computable["claim"])
    assert (by_seed.groupby("claim").size() == 6).all()
    fig = plots.forest_plot(by_seed)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == len(computable)
    c3 = next(ax for ax in panels if ax.get_title().startswith("C3:"))
    row = card.set_index("claim").loc["C3"]
    assert "reproduced" in c3.get_title() and "Holm p" in c3.get_title()
    dots = c3.collections[0].get_offsets()
    assert sorted(dots[:, 0] / 100) == pytest.approx(sorted(json.loads(row["seed_effects"]).values()))
    segment = c3.lines[0].get_xdata()
    assert segment == pytest.approx([row["lo"] * 100, row["hi"] * 100])
    threshold = [line.get_xdata()[0] for line in c3.lines if line.get_linestyle() == "--"]
    assert threshold == [row["threshold"] * 100]
    empty = plots.forest_plot(by_seed.iloc[0:0])
    assert "no claim" in empty.axes[0].texts[0].get_text()


def test_c4k_on_code_only_where_a_code_benchmark_is_scored():
    samples = make_samples(seeds=SIX_SEEDS, n_items=40, task_gain=0.3)
    assert "C4k" not in set(claims.scorecard(_store(samples), ClaimSettings())["claim"])  # the miniature world
    code = samples[samples["task"] == "qa"].assign(task="code")  # the task model gains on code as on qa
    card = claims.scorecard(_store(pd.concat([samples, code])), ClaimSettings()).set_index("claim")
    assert card.loc["C4k", "verdict"] == "reproduced" and "gap closed" in card.loc["C4k", "note"]
    lost = code.assign(correct=np.where(code["data_kind"] == "task", 0.0, code["correct"]))
    card = claims.scorecard(_store(pd.concat([samples, lost])), ClaimSettings()).set_index("claim")
    assert card.loc["C4k", "verdict"] == "not reproduced"


def test_a_nearly_flat_accuracy_curve_reads_not_reached():
    # correctness rises with exposure, but so slowly that the teacher's 90% lies ~1e6 times past the
    # largest exposure: no token count is extrapolated (was ~1e19 tokens), the seed reads "not reached"
    exposure = np.array([120.0, 60.0, 40.0, 30.0, 24.0, 20.0])
    correct = 1 / (1 + np.exp(2.2 - 0.05 * np.log1p(exposure)))
    rows = pd.DataFrame({"seed": 0, "item_id": [f"i{i}" for i in range(6)], "exposure": exposure,
                         "correct": correct, "imitation_tokens": 1000})
    _, to_match = metrics.coverage_cost(rows, rows.assign(correct=0.0), rows.assign(correct=0.9), np.array([0]))
    assert to_match[0] == np.inf
    # within the horizon (10x the largest exposure) the number stays
    steep = 1 / (1 + np.exp(3 - np.log1p(exposure)))
    _, to_match = metrics.coverage_cost(rows.assign(correct=steep), rows.assign(correct=0.0),
                                        rows.assign(correct=0.5), np.array([0]))
    assert np.isfinite(to_match[0])
    summary, note = claims._cost_summary(np.array([1000.0, np.inf, 3000.0, np.nan]), "base note")
    assert (summary.mean, summary.lo, summary.hi, summary.n) == (3000.0, 1000.0, np.inf, 3)
    assert "1 of 3 seeds: not reached" in note
    assert claims._number(np.inf, "tokens") == "not reached"
    assert claims._interval(np.inf, 340314.0, np.inf, "tokens") == "not reached [340,314, not reached] tokens"
