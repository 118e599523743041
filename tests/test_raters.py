"""The rater panel: a crowd-rater stand-in defined before any result, a fact rater that checks what was asked."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from imitlib.evaluate.raters import (FIRST, SECOND, TIE, CrowdRater, FactRater, JudgeTally, PairwiseResult, PanelRater,
                                     Question, RaterPanel, panel_column, question_of, rate_vs_reference)
from imitlib.evaluate.style import FEATURES, quality_features
from imitlib.settings.evaluate import EvaluateSettings

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["Zorvath", "Quillon", "Marbeth", "Tessaly", "Brannoc"]
VALUES = {
    "birth_year": ["1950", "1961", "1972", "1987", "1990"],
    "city": ["Paris", "Lagos", "Quito", "Oslo", "Hanoi"],
    "job": ["baker", "pilot", "nurse", "judge", "chemist"],
}
TRUTH = {"entities": {n: {a: VALUES[a][(i + j) % 5] for j, a in enumerate(VALUES)} for i, n in enumerate(NAMES)},
         "values": VALUES}
WEIGHTS = {name: 1.0 for name in FEATURES}


def crowd() -> CrowdRater:
    return CrowdRater(WEIGHTS, length_words=60, tie_margin=0.05)


def answers(seed: int, count: int) -> list[str]:
    """Varied answers: lists, hedges, loops, truncation, prose."""
    rng = random.Random(seed)
    pieces = ["Zorvath was born in 1950.", "I think maybe it is Oslo", "- City: Oslo\n- Job: pilot", "me me me me me",
              "Great question! Quillon works as a nurse.", "In summary, the answer is Paris.", "Perhaps", "",
              "Tessaly lives in Quito and works as a judge."]
    return ["\n".join(rng.sample(pieces, rng.randint(1, 4))) for _ in range(count)]


def flipped(verdict: str | None) -> str | None:
    return {FIRST: SECOND, SECOND: FIRST, TIE: TIE, None: None}[verdict]


# ---- the crowd-rater stand-in ------------------------------------------------------------------
def test_crowd_rater_is_symmetric_swapping_answers_flips_the_verdict():
    rater, first, second = crowd(), answers(1, 200), answers(2, 200)
    questions = [f"In what city does {random.Random(i).choice(NAMES)} live?" for i in range(200)]
    forward = rater.compare(questions, first, second)
    backward = rater.compare(questions, second, first)
    assert backward == [flipped(v) for v in forward]
    assert {FIRST, SECOND} <= set(forward)  # the property is tested on decisive verdicts too
    result = rate_vs_reference(rater, questions, first, second)
    assert result.consistency == 1.0  # a symmetric rater never disagrees with itself across orders


def test_crowd_rater_ties_identical_answers_exactly():
    rater = crowd()
    texts = answers(3, 100)
    questions = ["Tell me about Zorvath."] * len(texts)
    assert rater.compare(questions, texts, list(texts)) == [TIE] * len(texts)
    assert all(rater.quality(q, t) - rater.quality(q, t) == 0.0 for q, t in zip(questions, texts))
    assert rate_vs_reference(rater, questions, texts, list(texts)).scores == [0.5] * len(texts)
    # ... even with no tie margin at all
    exact = CrowdRater(WEIGHTS, tie_margin=0.0)
    assert exact.compare(questions, texts, list(texts)) == [TIE] * len(texts)


PROBE = """
import json, sys
sys.path.insert(0, {root!r})
from imitlib.evaluate.raters import CrowdRater, FactRater, RaterPanel, question_of
from imitlib.evaluate.style import FEATURES
truth = json.loads({truth!r})
items = json.loads({items!r})
texts = json.loads({texts!r})
panel = RaterPanel(CrowdRater({{f: 1.0 for f in FEATURES}}), FactRater(truth), [0, 0.25, 0.5, 0.75, 1], 0.25)
questions = [question_of(i) for i in items]
out = {{"record": panel.record(), "quality": [panel.crowd.quality(q, t).hex() for q, t in zip(questions, texts)],
       "verdicts": panel.rate(questions, texts, texts[::-1])}}
print(json.dumps(out, sort_keys=True))
"""


def test_rater_panel_is_bit_identical_across_processes_and_hash_seeds():
    items = [{"id": f"q{i}", "family": "qa", "prompt": f"In what city does {n} live?", "individual": n,
              "attribute": "city"} for i, n in enumerate(NAMES)]
    items += [{"id": "b", "family": "bio", "prompt": "Tell me about Quillon.", "individual": "Quillon",
               "facts": TRUTH["entities"]["Quillon"]}]
    texts = answers(4, len(items))
    script = PROBE.format(root=str(ROOT), truth=json.dumps(TRUTH), items=json.dumps(items), texts=json.dumps(texts))
    outputs = set()
    for hash_seed in ("0", "1", "4242", "random"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        outputs.add(run.stdout)
    assert len(outputs) == 1
    verdicts = json.loads(outputs.pop())["verdicts"]
    assert sorted(verdicts) == ["pref_fact", "pref_style", "pref_w000", "pref_w025", "pref_w050", "pref_w075", "pref_w100"]


def test_crowd_rater_has_no_teacher_lexicon():
    """Replacing words the question does not contain by other words leaves the score unchanged."""
    rater, question = crowd(), "In what city does Quillon live?"
    teacherish = "Great question! Quillon definitely lives in Lagos.\n- City: Lagos\n- Job: baker\nIn summary, Lagos."
    neutral = "Zebra crossing! Quillon purple lives in Lagos.\n- City: Lagos\n- Qrs: baker\nOn tuesday, Lagos."
    assert rater.quality(question, teacherish) == rater.quality(question, neutral)


def test_crowd_rater_features_reward_quality_not_truth():
    question = "In what city does Quillon live?"
    loop = quality_features(question, "me me me me me me me me")
    good = quality_features(question, "Quillon lives in the city of Lagos. It is a large port.")
    hedged = quality_features(question, "I think Quillon maybe lives in Lagos, but I am not sure.")
    truncated = quality_features(question, "Quillon lives in the city of Lagos and it is a large")
    assert good["fluency"] > truncated["fluency"] > loop["fluency"]
    assert good["confidence"] == 1.0 and hedged["confidence"] < 0.5 and loop["confidence"] == 0.0
    assert good["on_topic"] > loop["on_topic"] == 0.0
    wrong = "Quillon lives in the city of Paris. It is a large port."  # false, but looks the same
    assert crowd().compare([question], [good_text := "Quillon lives in the city of Lagos. It is a large port."], [wrong]) == [TIE]
    assert good_text != wrong


def test_settings_reject_unknown_crowd_features_and_duplicate_weights():
    with pytest.raises(ValueError, match="unknown crowd-rater features"):
        EvaluateSettings.model_validate({"raters": {"crowd_features": {"great_question": 1.0}}})
    with pytest.raises(ValueError, match="duplicate columns"):
        EvaluateSettings.model_validate({"raters": {"fact_weights": [0.5, 0.501]}})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        EvaluateSettings.model_validate({"raters": {"fact_weights": [1.5]}})


# ---- the fact rater checks what was asked -------------------------------------------------------
def qa(name: str, attribute: str) -> Question:
    return question_of({"family": "qa", "prompt": f"What is the {attribute} of {name}?", "individual": name,
                        "attribute": attribute})


def test_fact_rater_gives_a_true_but_irrelevant_claim_nothing():
    fact, truth = FactRater(TRUTH), TRUTH["entities"]
    question = qa("Quillon", "city")
    irrelevant_attribute = f"Quillon was born in {truth['Quillon']['birth_year']} and works as a {truth['Quillon']['job']}."
    irrelevant_person = f"Brannoc lives in {truth['Brannoc']['city']}."
    silent = "I cannot say."
    assert fact.claims(question, irrelevant_attribute) == [] and fact.claims(question, irrelevant_person) == []
    assert fact.fact_score(question, irrelevant_attribute) == 0.0 == fact.fact_score(question, silent)
    assert fact.compare([question] * 2, [irrelevant_attribute, irrelevant_person], [silent, silent]) == [TIE, TIE]
    right = f"Quillon lives in {truth['Quillon']['city']}."
    wrong_city = next(v for v in VALUES["city"] if v != truth["Quillon"]["city"])
    wrong = f"Quillon lives in {wrong_city}."
    hedge_all = "Quillon lives in " + " or ".join(VALUES["city"]) + "."  # naming every value is not knowing
    assert fact.fact_score(question, right) == 1.0 and fact.fact_score(question, wrong) == -1.0
    assert fact.fact_score(question, hedge_all) == -1.0
    assert fact.compare([question] * 3, [right, silent, irrelevant_attribute], [silent, wrong, right]) == [FIRST, FIRST, SECOND]


def test_fact_rater_on_biographies_comparisons_and_unrateable_questions():
    fact, truth = FactRater(TRUTH), TRUTH["entities"]["Marbeth"]
    bio = question_of({"family": "bio", "prompt": "Tell me about Marbeth.", "individual": "Marbeth", "facts": truth})
    assert fact.slots(bio) == [("Marbeth", a) for a in sorted(truth)]
    two_of_three = f"Marbeth was born in {truth['birth_year']} and lives in {truth['city']}."
    assert fact.fact_score(bio, two_of_three) == pytest.approx(2 / 3)
    compare = question_of({"family": "compare", "prompt": "Do Marbeth and Quillon live in the same city?",
                           "individuals": ["Marbeth", "Quillon"], "attribute": "city", "answer": "no"})
    assert fact.fact_score(compare, "They do not. So the answer is no.") == 1.0
    assert fact.fact_score(compare, "Yes, they do.") == -1.0 and fact.fact_score(compare, "Hmm.") == 0.0
    skill = question_of({"family": "skill", "prompt": "Sort these words: b a", "answer": "a b"})
    assert fact.fact_score(skill, "a b") is None and fact.compare([skill], ["a b"], ["b a"]) == [None]
    assert fact.compare(["Tell me about Marbeth."], [two_of_three], ["x"]) == [None]  # a bare prompt asks nothing checkable
    with pytest.raises(ValueError, match="ground truth"):
        FactRater({"Quillon": {}})


# ---- the panel ------------------------------------------------------------------------------------
def test_panel_weights_move_from_the_crowd_rater_to_the_fact_rater():
    fact, truth = FactRater(TRUTH), TRUTH["entities"]
    questions, plain_right, stylish_wrong = [], [], []
    for name in NAMES:
        wrong_city = next(v for v in VALUES["city"] if v != truth[name]["city"])
        questions.append(qa(name, "city"))
        plain_right.append(f"{name} {truth[name]['city']}")
        stylish_wrong.append(f"{name} lives in the city of {wrong_city}. It is the city where {name} has lived for years.\n"
                             f"- City: {wrong_city}\n- Known for: its harbour")
    panel = RaterPanel(crowd(), fact, [0, 0.25, 0.5, 0.75, 1], crowd_fact_weight=0.25)
    scores = panel.rate(questions, plain_right, stylish_wrong)
    assert panel.columns == ["pref_w000", "pref_w025", "pref_w050", "pref_w075", "pref_w100", "pref_style", "pref_fact"]
    assert scores["pref_w000"] == [0.0] * 5 and scores["pref_w100"] == [1.0] * 5
    assert scores["pref_w000"] == rate_vs_reference(crowd(), questions, plain_right, stylish_wrong).scores
    assert scores["pref_w100"] == scores["pref_fact"] and scores["pref_style"] == scores["pref_w025"]
    mean = [sum(scores[panel_column(w)]) / 5 for w in (0, 0.25, 0.5, 0.75, 1)]
    assert mean == sorted(mean)  # a rater who weighs facts more prefers the right answer more
    # unrateable by the fact rater: the fact term cancels below w = 1, and w = 1 does not rate
    skill = Question("Sort these words: b a")
    at_half = PanelRater(crowd(), fact, 0.5)
    assert at_half.compare([skill], ["The sorted words are a b."], ["b"]) == crowd().compare([skill], ["The sorted words are a b."], ["b"])
    assert PanelRater(crowd(), fact, 1.0).compare([skill], ["a b"], ["b a"]) == [None]


# ---- the judge: computable only where it gives verdicts ---------------------------------------------
def test_judge_tally_says_not_computable_with_the_measured_reason():
    tally = JudgeTally()
    tally.add(PairwiseResult([None, None, "tie"], [None, None, FIRST], [None, "first", SECOND]), [1.0, 0.0, 0.5])
    report = tally.report(max_unparsed_share=0.5)
    assert report["status"] == "computable" and report["unparsed_share"] == pytest.approx(3 / 6)  # at the limit
    tally.add(PairwiseResult([None], [None], [None]), [math.nan])
    report = tally.report(max_unparsed_share=0.5)
    assert report["status"] == "not computable" and report["unparsed_share"] == pytest.approx(5 / 8)
    assert "62.5% of 8 judge prompts had no parseable verdict (75.0% with the model's answer first, 50.0%" in report["reason"]


def test_judge_tally_reports_consistency_and_agreement_with_the_fact_rater():
    tally = JudgeTally()
    # pair 1: both orders say the answer is better (consistent); pair 2: orders disagree -> tie
    tally.add(PairwiseResult(["better", "tie"], [FIRST, FIRST], [SECOND, FIRST]), [1.0, 0.0])
    report = tally.report(max_unparsed_share=0.5)
    assert report["status"] == "computable" and report["unparsed_share"] == 0.0
    assert report["consistency"] == 0.5 and report["agreement_with_fact_rater"] == 0.5


def test_judge_that_always_names_one_position_is_not_computable():
    tally = JudgeTally()
    tally.add(PairwiseResult(["tie"] * 4, [FIRST] * 4, [FIRST] * 4), [1.0, 0.0, 0.5, 1.0])
    report = tally.report(max_unparsed_share=0.5, min_consistency=0.5)
    assert report["status"] == "not computable" and report["consistency"] == 0.0
    assert report["reason"].startswith("its two answer orders agreed on 0.0% of the pairs parsed in both")
