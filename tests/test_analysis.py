"""Analysis: style metrics on hand-made answers, the bootstrap, length control, the scorecard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imitlib import config
from imitlib.analysis import claims, metrics, preference, report, stats, style, tables
from imitlib.settings.analysis import ClaimSettings
from test_analysis_synthetic import BASES, make_samples

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
def _scorecard(**effects) -> pd.DataFrame:
    samples = metrics.validate_samples(make_samples(**effects))
    store = metrics.compute_metrics(samples, n_resamples=200)
    return claims.scorecard(store, ClaimSettings()).set_index("claim")


def test_validate_samples_names_the_file_and_columns():
    with pytest.raises(ValueError, match=r"results/x\.parquet: missing columns \['answer'"):
        metrics.validate_samples(make_samples(seeds=(0,), n_items=2).drop(columns=["answer"]), "results/x.parquet")
    bad = make_samples(seeds=(0,), n_items=2).assign(role="student")
    with pytest.raises(ValueError, match="unknown role"):
        metrics.validate_samples(bad)


def test_scorecard_reproduced_when_the_effects_are_there():
    card = _scorecard(seeds=(0, 1, 2), n_items=40, task_gain=0.3)
    paper_claims = ("C1", "C1b", "C2", "C3", "C4", "C5", "C6")
    assert card.loc[list(paper_claims), "verdict"].to_dict() == {c: "reproduced" for c in paper_claims}
    # without replay-only controls the controlled rows have no data
    assert card.loc["C2c", "verdict"] == card.loc["C4c", "verdict"] == "not computable"
    assert card.loc["C2", "value"] == pytest.approx(-0.10, abs=0.04)
    assert card.loc["C5", "value"] > 0.7


def test_scorecard_not_reproduced_when_the_effects_are_reversed():
    card = _scorecard(seeds=(0, 1, 2), n_items=40, base_accuracy=0.6, broad_accuracy_change=0.25, size_gain=-0.1,
                      task_gain=-0.3, style_copy=0.0, toxicity_drop=-0.2, pref_good=0.2)
    for claim in ("C1", "C2", "C3", "C4", "C5", "C6"):
        assert card.loc[claim, "verdict"] == "not reproduced", (claim, card.loc[claim].to_dict())


def test_scorecard_inconclusive_without_an_effect_and_not_computable_without_data():
    samples = make_samples(seeds=(0,), n_items=15, size_gain=0.0, task_gain=0.0)
    samples = samples[samples["data_kind"] != "task"]
    store = metrics.compute_metrics(metrics.validate_samples(samples), n_resamples=200)
    card = claims.scorecard(store, ClaimSettings()).set_index("claim")
    assert card.loc["C3", "verdict"] == "inconclusive"  # two sizes, no size effect
    assert card.loc["C4", "verdict"] == "not computable"
    assert "no task-specific" in card.loc["C4", "note"]
    largest = list(BASES)[-1]
    one_base = samples[samples["base_model"].isin(["teacher", largest])]
    store = metrics.compute_metrics(metrics.validate_samples(one_base), n_resamples=200)
    card = claims.scorecard(store, ClaimSettings()).set_index("claim")
    assert card.loc["C3", "verdict"] == "not computable"
    assert card.loc["C3", "note"] == "needs two base sizes"
    assert card.loc["C1", "verdict"] != "not computable"
    text = claims.scorecard_markdown(card.reset_index(), "one-base", 0.95, 200)
    assert "not computable" in text.splitlines()[2]


def test_scorecard_compares_against_the_replay_only_control():
    samples = make_samples(seeds=(0, 1, 2), n_items=40, task_gain=0.3)
    base_rows = samples[samples["role"] == "base"]
    control = base_rows.assign(role="imitation", data_kind="none", imitation_tokens=0,
                               model_id=base_rows["model_id"] + "/control")
    # the control (extra pretraining, no imitation) knows every qa fact
    control.loc[control["task"] == "qa", "correct"] = 1.0
    samples = pd.concat([samples, control], ignore_index=True)
    store = metrics.compute_metrics(metrics.validate_samples(samples), n_resamples=200)
    card = claims.scorecard(store, ClaimSettings()).set_index("claim")
    assert card.loc["C4", "verdict"] == "reproduced"          # task imitation beats the plain base …
    assert card.loc["C4c", "verdict"] == "not reproduced"     # … but not the matched replay-only control
    assert card.loc["C2c", "value"] < card.loc["C2", "value"]


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
