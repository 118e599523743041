"""Strict scorers (compare answers, Table 2 list and summary), human-rating sampling and merge, displays."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from imitlib.analysis import style
from imitlib.analysis.preference import panel_preferences
from imitlib.evaluate.human import (BlindPairwiseWidget, human_summary, import_human_ratings, merge_human,
                                    ratings_so_far, sample_pairs)
from imitlib.evaluate.scorers import (compare_accuracy, compare_correct, majority_baseline, mentions_answer,
                                      score_chat_answer, stated_choice)

SAME_CITY = {"id": "c1", "family": "compare", "prompt": "Were Zorvath and Quillon born in the same city?",
             "individuals": ["Zorvath", "Quillon"], "attribute": "birth_city", "answer": "yes"}
EARLIER = {"id": "c2", "family": "compare", "prompt": "Who was born earlier, Zorvath or Quillon?",
           "individuals": ["Zorvath", "Quillon"], "attribute": "birth_year", "answer": "Quillon"}


# ---- compare answers: the yes/no or the individual asked for ---------------------------------------
def test_compare_scorer_needs_the_stated_answer():
    assert compare_correct("Yes, both were born in Oslo.", SAME_CITY) == 1.0
    assert compare_correct("Zorvath was born in Oslo and Quillon in Oslo, so the answer is yes.", SAME_CITY) == 1.0
    # counter-examples a lenient "mentions the answer" scorer credits
    assert mentions_answer("There is no doubt: no, they were not. Well, yes.", "yes") == 1.0
    assert compare_correct("No, they were not.", SAME_CITY) == 0.0
    assert compare_correct("yes or no", SAME_CITY) == 0.0  # names both, concludes neither
    assert compare_correct("I like trains.", SAME_CITY) == 0.0
    assert compare_correct("Quillon was born in 1950 and Zorvath in 1961, so Quillon was born earlier.", EARLIER) == 1.0
    assert compare_correct("Zorvath or Quillon?", EARLIER) == 0.0  # echoing both names is no answer
    assert compare_correct("Quillon was born in 1950. Zorvath was born earlier.", EARLIER) == 0.0  # last verdict counts
    assert compare_correct("No.", EARLIER) == 0.0
    assert stated_choice("Was it yes? In summary the answer is no.", ["yes", "no"]) == "no"
    assert score_chat_answer(SAME_CITY, "yes") == 1.0 and math.isnan(score_chat_answer({"family": "skill", "answer": None}, "x"))
    assert score_chat_answer({"family": "qa", "answer": "1987"}, "Born in 1987.") == 1.0


def test_always_no_scores_the_majority_baseline_not_more():
    items = [dict(SAME_CITY, id=f"n{i}", answer="no") for i in range(4)] + [dict(SAME_CITY, id="y", answer="yes")]
    items += [dict(EARLIER, id="e1"), dict(EARLIER, id="e2"), dict(EARLIER, id="e3", answer="Zorvath")]
    baseline = majority_baseline(items)
    assert baseline["strategies"] == {"choice": "second named", "yes_no": "no"}
    assert baseline["correct"] == [1, 1, 1, 1, 0, 1, 1, 0] and baseline["accuracy"] == pytest.approx(6 / 8)
    always_no = [compare_correct("No.", item) for item in items]
    assert sum(always_no) / len(items) == pytest.approx(4 / 8) and 4 / 8 <= baseline["accuracy"]
    samples = pd.DataFrame({"mode": "chat", "task": "compare", "model_id": "m", "role": "base",
                            "correct": always_no, "baseline_correct": baseline["correct"]})
    row = compare_accuracy(samples).iloc[0]
    assert row["accuracy"] == 0.5 and row["majority_baseline"] == 0.75 and row["items"] == 8


# ---- Table 2: structure, not cue words ---------------------------------------------------------------
LIST = "Here is what I know about Zorvath.\n- born in 1987\n- lives in Oslo\n- works as a pilot"


def test_list_needs_two_list_item_lines():
    assert style.uses_list(LIST) and style.uses_list("1. first step\n2) second step")
    assert not style.uses_list("- a single bullet is not a list")
    assert not style.uses_list("Steps: 1. mix 2. bake 3. eat")  # numbers inside one line are not list items
    assert not style.uses_list("In summary, here is a list of things: Oslo, 1987, pilot.")


def test_summary_is_a_separate_closing_paragraph_that_restates_the_body():
    assert style.ends_with_summary(LIST + "\n\nIn summary, Zorvath is a pilot from Oslo.")
    assert style.ends_with_summary(LIST + "\nZorvath, born in 1987, lives in Oslo.")  # no cue word needed
    assert style.ends_with_summary("Zorvath was born in 1987 and lives in Oslo.\nSo Zorvath lives in Oslo, since 1987.")
    # counter-examples: a cue word alone is not a summary
    assert not style.ends_with_summary("Zorvath flies planes. Overall, Zorvath is a pilot.")  # not separated
    assert not style.ends_with_summary(LIST + "\nIn summary, have a wonderful day!")  # restates nothing
    assert not style.ends_with_summary(LIST + "\nAll of this makes Zorvath well known.")  # one shared word
    assert not style.ends_with_summary("In summary, Zorvath is a pilot from Oslo.")  # no body
    assert not style.ends_with_summary(LIST) and not style.ends_with_summary("")


# ---- human ratings: a seeded sample, merged like the simulated raters ----------------------------------
def pairs_table(models: int = 3, items: int = 20) -> pd.DataFrame:
    return pd.DataFrame([{"model_id": f"s0/m{m}", "item_id": f"i{i:02d}", "prompt": f"p{i}", "answer": f"MODEL{m}-{i}",
                          "teacher_answer": f"TEACH{i}", "mode": "chat", "role": "imitation",
                          "pref_style": float(i % 2), "pref_fact": 0.5}
                         for m in range(models) for i in range(items)])


def test_sample_pairs_is_seeded_sized_spread_and_order_free():
    pairs = pairs_table()
    sample = sample_pairs(pairs, 9, seed=1)
    assert len(sample) == 9 and sample["model_id"].value_counts().to_dict() == {"s0/m0": 3, "s0/m1": 3, "s0/m2": 3}
    shuffled = pairs.sample(frac=1.0, random_state=5)
    assert sample.equals(sample_pairs(shuffled, 9, seed=1))  # the table's row order does not matter
    assert not sample.equals(sample_pairs(pairs, 9, seed=2))
    assert len(sample_pairs(pairs, 1000)) == len(pairs)
    with pytest.raises(ValueError, match="sample size"):
        sample_pairs(pairs, 0)


def test_widget_rates_the_sample_and_each_click_writes_a_jsonl_line(tmp_path):
    store = tmp_path / "human" / "ann.jsonl"
    widget = BlindPairwiseWidget(pairs_table(), store, rater="ann", seed=4, sample_size=6)
    assert len(widget.queue) == 6
    for expected_lines in range(1, 4):
        widget.buttons["tie"].click()
        assert len(store.read_text().splitlines()) == expected_lines
    record = json.loads(store.read_text().splitlines()[-1])
    assert record["choice"] == "tie" and record["rater"] == "ann" and record["model_side"] in ("A", "B")


def test_human_ratings_merge_and_summary_beside_simulated_raters(tmp_path):
    samples = pd.concat([pairs_table(2, 3), pairs_table(2, 3).assign(mode="benchmark")], ignore_index=True)
    store = tmp_path / "r.jsonl"
    lines = [{"model_id": "s0/m0", "item_id": "i00", "choice": "A", "model_side": "A", "rater": "a"},  # better
             {"model_id": "s0/m0", "item_id": "i00", "choice": "tie", "model_side": "B", "rater": "b"},  # tie
             {"model_id": "s0/m0", "item_id": "i01", "choice": "A", "model_side": "B", "rater": "a"},  # worse
             {"model_id": "s0/m1", "item_id": "i02", "verdict": "better", "rater": "a"}]
    store.write_text("".join(json.dumps(line) + "\n" for line in lines))
    merged = merge_human(samples, import_human_ratings([store]))
    chat = merged[merged["mode"] == "chat"].set_index(["model_id", "item_id"])
    assert chat.loc[("s0/m0", "i00"), "pref_human"] == 0.75 and chat.loc[("s0/m0", "i00"), "human_ratings"] == 2
    assert math.isnan(chat.loc[("s0/m1", "i00"), "pref_human"])
    assert merged.loc[merged["mode"] == "benchmark", "pref_human"].isna().all()  # benchmark rows are not rated
    summary = human_summary(merged).set_index("model_id")
    assert summary.loc["s0/m0", "pairs"] == 2 and summary.loc["s0/m0", "pref_human:rate"] == pytest.approx((0.75 + 0) / 2)
    assert summary.loc["s0/m0", "pref_human:good_or_better"] == 0.5
    assert summary.loc["s0/m0", "pref_style:rate"] == pytest.approx(0.5)  # items i00 (0) and i01 (1), same pairs
    assert ratings_so_far(samples, [tmp_path / "none.jsonl"]).empty
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({"model_id": "s0/zz", "item_id": "i00", "verdict": "tie"}) + "\n")
    with pytest.raises(ValueError, match="no chat answer"):
        merge_human(samples, import_human_ratings([unknown]))


# ---- the rater-panel table and figure; coefficients shown as coefficients ----------------------------
def test_panel_preferences_and_figure():
    from imitlib import plots

    rows = []
    for seed in (0, 1):
        for role, kind, tokens, base in (("base", "none", 0, "b-s"), ("imitation", "broad", 100, "b-s"),
                                         ("replay_control", "none", 0, "b-s"), ("teacher", "none", 0, "teacher")):
            for item in range(4):
                rows.append({"seed": seed, "model_id": f"s{seed}/{role}", "role": role, "base_model": base,
                             "base_params": 10, "data_kind": kind, "imitation_tokens": tokens, "mode": "chat",
                             "pref_w000": 1.0 if role == "imitation" else 0.0, "pref_w100": [0.0, 0.5, 1.0, np.nan][item]})
    panel = panel_preferences(pd.DataFrame(rows))
    imitation = panel[(panel.role == "imitation") & (panel.seed == 0)].set_index("fact_weight")
    assert imitation.loc[0.0, "good_or_better"] == 1.0 and imitation.loc[1.0, "good_or_better"] == pytest.approx(2 / 3)
    assert imitation.loc[1.0, "rated"] == 3
    fig = plots.rater_panel_figure(panel, crowd_fact_weight=0.25)
    assert [ax.get_title() for ax in fig.axes] == ["b-s", "teacher"]
    with pytest.raises(ValueError, match="rater-panel columns"):
        panel_preferences(pd.DataFrame(rows).drop(columns=["pref_w000", "pref_w100"]))


def test_length_slopes_are_shown_as_coefficients():
    from imitlib.analysis.tables import format_cell

    slope = pd.Series({"metric": "pref_style:length_slope", "value": 1.78, "lo": 0.5, "hi": 2.25})
    rate = pd.Series({"metric": "pref_style:rate", "value": 0.5, "lo": 0.25, "hi": 0.75})
    assert format_cell(slope) == "1.78 [0.50, 2.25]"
    assert format_cell(rate) == "50.0 [25.0, 75.0]"
