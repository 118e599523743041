"""Pairwise raters that compare a model's answer with the teacher's answer to the same question.

Every rater answers one question for a batch of pairs: which of two answers, shown in a given
order, is better ("first", "second" or "tie"; ``None`` where it cannot rate). :func:`rate_vs_reference`
asks it twice with the order swapped and keeps a verdict only when both orders agree (an
inconsistent pair counts as a tie), as MT-bench does against position bias. Verdicts are scored
1 (better than the teacher), 0.5 (tie) and 0 (worse); NaN where the rater could not rate.

The raters, and what each can see:

* :class:`CrowdRater` (the crowd-rater stand-in) sees how an answer looks and whether it stays on
  the question (:mod:`imitlib.evaluate.style`: fixed, pre-declared features and weights); it
  cannot check facts and was never fit on any answer.
* :class:`FactRater` sees the ground truth, and only the part of it that was asked: the asked
  attribute of the asked individual(s), or the yes/no / individual a comparison asks for.
* :class:`PanelRater` is a rater who weighs facts by ``w``: score ``(1 - w) * quality + w * fact``.
  ``w = 0`` is the crowd rater, ``w = 1`` the fact rater; the params pre-register the crowd weight.
* :class:`LLMJudge` is a model behind an OpenAI-compatible endpoint; :class:`JudgeTally` says
  whether its verdicts mean anything (parseable replies, order consistency, agreement with facts).

Questions are :class:`Question` objects (built from task items by :func:`question_of`); a plain
prompt string is a question with nothing checkable for the fact rater.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, Union

import numpy as np

from imitlib.evaluate.scorers import compare_candidates, stated_choice
from imitlib.evaluate.style import FEATURES, quality

FIRST, SECOND, TIE = "first", "second", "tie"
VERDICT_SCORE = {"better": 1.0, "tie": 0.5, "worse": 0.0}


@dataclass(frozen=True)
class Question:
    """A prompt and what it asks: the individual(s), their attribute(s), or a choice to state.

    ``choices`` (with ``expected``) marks a question answered by stating one of them (a comparison:
    ``("yes", "no")`` or the two individuals); ``attributes`` the facts asked about ``individuals``.
    """

    prompt: str
    individuals: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    expected: str | None = None


QuestionLike = Union[str, Question]


def as_question(question: QuestionLike) -> Question:
    """A :class:`Question` (a plain string becomes one that asks nothing checkable)."""
    return question if isinstance(question, Question) else Question(str(question))


def question_of(item: Mapping[str, Any]) -> Question:
    """What a task item asks (docs/ARCHITECTURE.md item format).

    ``qa``: the item's attribute of its individual; ``bio``: every attribute in its ``facts``;
    ``compare``: the stated yes/no or individual; other families: nothing the fact rater can check.
    """
    family = item.get("family")
    individuals = tuple(str(n) for n in (item.get("individuals") or ([item["individual"]] if item.get("individual") else [])))
    if family == "qa" and item.get("attribute"):
        return Question(str(item["prompt"]), individuals, (str(item["attribute"]),))
    if family == "bio":
        return Question(str(item["prompt"]), individuals, tuple(sorted(item.get("facts") or {})))
    if family == "compare" and item.get("answer") is not None:
        return Question(str(item["prompt"]), individuals, (), tuple(compare_candidates(dict(item))), str(item["answer"]))
    return Question(str(item["prompt"]), individuals)


class PairRater(Protocol):
    """Anything that says which of two answers to a question is better."""

    name: str

    def compare(self, questions: Sequence[QuestionLike], first: Sequence[str], second: Sequence[str]) -> list[str | None]:
        """One of ``first`` / ``second`` / ``tie`` (or None: cannot rate) per pair."""
        ...


@dataclass
class PairwiseResult:
    """Verdicts of one rater for a batch of (answer, reference) pairs."""

    verdicts: list[str | None]          # better | tie | worse | None
    answer_first: list[str | None]      # raw choice with the model's answer shown first
    reference_first: list[str | None]   # raw choice with the teacher's answer shown first

    @property
    def scores(self) -> list[float]:
        return [VERDICT_SCORE[v] if v is not None else math.nan for v in self.verdicts]

    @property
    def consistency(self) -> float:
        """Share of pairs rated in both orders whose two orders agreed."""
        pairs = [(a, b) for a, b in zip(self.answer_first, self.reference_first) if a is not None and b is not None]
        if not pairs:
            return math.nan
        agree = sum(_as_verdict(a, answer_is_first=True) == _as_verdict(b, answer_is_first=False) for a, b in pairs)
        return agree / len(pairs)


def _as_verdict(choice: str | None, answer_is_first: bool) -> str | None:
    if choice is None:
        return None
    if choice == TIE:
        return "tie"
    answer_won = (choice == FIRST) == answer_is_first
    return "better" if answer_won else "worse"


def rate_vs_reference(
    rater: PairRater, questions: Sequence[QuestionLike], answers: Sequence[str], references: Sequence[str]
) -> PairwiseResult:
    """Rate each answer against its reference (the teacher's answer) in both orders.

    Returns:
        verdicts ``better`` / ``tie`` / ``worse`` for the answer (None where either order could not
        be rated); orders that disagree give ``tie``.
    """
    if not (len(questions) == len(answers) == len(references)):
        raise ValueError(f"questions, answers, references differ in length: {len(questions)}, {len(answers)}, {len(references)}")
    forward = rater.compare(questions, answers, references)
    backward = rater.compare(questions, references, answers)
    verdicts: list[str | None] = []
    for a, b in zip(forward, backward):
        v1, v2 = _as_verdict(a, True), _as_verdict(b, False)
        if v1 is None or v2 is None:
            verdicts.append(None)
        else:
            verdicts.append(v1 if v1 == v2 else "tie")
    return PairwiseResult(verdicts, list(forward), list(backward))


def _by_margin(difference: float, tie_margin: float) -> str:
    return FIRST if difference > tie_margin else SECOND if difference < -tie_margin else TIE


# ------------------------------------------------------------------------------------------------
# the fact rater: checks what was asked
# ------------------------------------------------------------------------------------------------
@dataclass
class Claim:
    """One checkable statement found in an answer: ``entity``'s ``attribute`` is ``value``."""

    entity: str
    attribute: str
    value: str
    true: bool


def _phrase_pattern(phrase: str) -> str:
    return r"(?<![\w])" + re.escape(phrase) + r"(?![\w])"


@dataclass
class FactRater:
    """Checks an answer against a ground-truth lookup, crediting only what the question asked.

    ``ground_truth = {"entities": {name: {attribute: value}}, "values": {attribute: [values]}}``.
    A claim is a mention of a value of an asked attribute, attributed to the nearest individual
    named before it in the answer (or, failing that, the first individual asked about); claims about
    individuals or attributes that were not asked are ignored, true or false. Each asked
    (individual, attribute) slot scores +1 when the answer states the true value and no other,
    -1 when it states a wrong value, 0 when it says nothing about it; a comparison's one slot is
    the stated yes/no or individual (:func:`imitlib.evaluate.scorers.stated_choice`). The fact
    score is the mean over slots, in [-1, 1]; a question with no slot in the lookup is not rated.
    """

    ground_truth: dict
    name: str = "fact"
    tie_margin: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.ground_truth, dict) or "entities" not in self.ground_truth or "values" not in self.ground_truth:
            raise ValueError("ground truth must be {'entities': {name: {attr: value}}, 'values': {attr: [values]}}")
        entities = self.ground_truth["entities"]
        self._canonical = {name.lower(): name for name in entities}
        names = sorted(entities, key=lambda n: (-len(n), n))
        self._entity_re = re.compile("|".join(_phrase_pattern(n) for n in names), re.IGNORECASE) if names else None
        value_attrs: dict[str, list[str]] = {}
        for attribute in sorted(self.ground_truth["values"]):
            for value in self.ground_truth["values"][attribute]:
                value_attrs.setdefault(str(value).lower(), []).append(attribute)
        self._value_attrs = value_attrs
        ordered = sorted(value_attrs, key=lambda v: (-len(v), v))
        self._value_re = re.compile("|".join(_phrase_pattern(v) for v in ordered), re.IGNORECASE) if ordered else None

    def entities_in(self, text: str) -> list[tuple[int, str]]:
        """(position, canonical name) of each entity mention."""
        if self._entity_re is None:
            return []
        return [(m.start(), self._canonical[m.group(0).lower()]) for m in self._entity_re.finditer(text)]

    def slots(self, question: QuestionLike) -> list[tuple[str, str]]:
        """The (individual, attribute) facts the question asks that the lookup can check."""
        q = as_question(question)
        entities = self.ground_truth["entities"]
        return [(e, a) for e in q.individuals for a in q.attributes if e in entities and a in entities[e]]

    def claims(self, question: QuestionLike, answer: str) -> list[Claim]:
        """The answer's claims about the asked attributes of the asked individuals."""
        q = as_question(question)
        if self._value_re is None or not q.individuals or not q.attributes:
            return []
        entities = self.ground_truth["entities"]
        mentions = self.entities_in(answer)
        found: list[Claim] = []
        for match in self._value_re.finditer(answer):
            before = [name for pos, name in mentions if pos < match.start()]
            entity = before[-1] if before else q.individuals[0]
            if entity not in q.individuals or entity not in entities:
                continue  # about someone who was not asked about
            value = match.group(0).lower()
            asked = [a for a in self._value_attrs[value] if a in q.attributes]
            if not asked:
                continue  # a value of an attribute that was not asked
            true_attrs = [a for a in asked if str(entities[entity].get(a, "")).lower() == value]
            found.append(Claim(entity, (true_attrs or asked)[0], match.group(0), bool(true_attrs)))
        return found

    def fact_score(self, question: QuestionLike, answer: str) -> float | None:
        """Mean slot score in [-1, 1]; None when the question has nothing checkable."""
        q = as_question(question)
        if q.choices and q.expected is not None:
            stated = stated_choice(answer, q.choices)
            return 0.0 if stated is None else (1.0 if stated.lower() == q.expected.lower() else -1.0)
        slots = self.slots(q)
        if not slots:
            return None
        claims = self.claims(q, answer)
        total = 0.0
        for entity, attribute in slots:
            said = [c for c in claims if c.entity == entity and c.attribute == attribute]
            if any(not c.true for c in said):
                total -= 1.0
            elif said:
                total += 1.0
        return total / len(slots)

    def score(self, question: QuestionLike, answer: str) -> tuple[int, int]:
        """(true, false) claims about what was asked."""
        claims = self.claims(question, answer)
        true = sum(c.true for c in claims)
        return true, len(claims) - true

    def compare(self, questions: Sequence[QuestionLike], first: Sequence[str], second: Sequence[str]) -> list[str | None]:
        out: list[str | None] = []
        for question, a, b in zip(questions, first, second):
            fa, fb = self.fact_score(question, a), self.fact_score(question, b)
            out.append(None if fa is None or fb is None else _by_margin(fa - fb, self.tie_margin))
        return out


# ------------------------------------------------------------------------------------------------
# the crowd-rater stand-in and the rater panel
# ------------------------------------------------------------------------------------------------
@dataclass
class CrowdRater:
    """Prefers the answer of higher :func:`imitlib.evaluate.style.quality`; ties within ``tie_margin``.

    Symmetric by construction (the verdict depends on ``quality(a) - quality(b)``, which changes
    sign exactly when the answers swap) and identical answers tie exactly (a difference of 0).
    """

    weights: Mapping[str, float]
    length_words: int = 60
    tie_margin: float = 0.05
    name: str = "crowd"

    def quality(self, question: QuestionLike, answer: str) -> float:
        return quality(as_question(question).prompt, answer, self.weights, self.length_words)

    def compare(self, questions: Sequence[QuestionLike], first: Sequence[str], second: Sequence[str]) -> list[str | None]:
        return [_by_margin(self.quality(q, a) - self.quality(q, b), self.tie_margin)
                for q, a, b in zip(questions, first, second)]

    def record(self) -> dict:
        return {"name": self.name, "features": list(FEATURES), "weights": {k: float(self.weights.get(k, 0.0)) for k in FEATURES},
                "length_words": self.length_words, "tie_margin": self.tie_margin}


@dataclass
class PanelRater:
    """A rater who weighs facts by ``fact_weight``: ``(1 - w) * quality + w * (fact + 1) / 2``.

    Both terms lie in [0, 1]. Where the fact rater cannot check the question, the fact term is
    equal for both answers (it cancels) when ``w < 1``, and the pair is not rated when ``w = 1``.
    At ``w = 1`` the verdicts are the fact rater's.
    """

    crowd: CrowdRater
    fact: FactRater
    fact_weight: float
    tie_margin: float = 0.05

    @property
    def name(self) -> str:
        return panel_column(self.fact_weight)

    def value(self, question: QuestionLike, answer: str) -> float | None:
        fact = self.fact.fact_score(question, answer)
        if fact is None and self.fact_weight >= 1.0:
            return None
        fact_term = 0.5 if fact is None else (fact + 1.0) / 2.0
        style_term = self.crowd.quality(question, answer) if self.fact_weight < 1.0 else 0.0
        return (1.0 - self.fact_weight) * style_term + self.fact_weight * fact_term

    def compare(self, questions: Sequence[QuestionLike], first: Sequence[str], second: Sequence[str]) -> list[str | None]:
        out: list[str | None] = []
        for q, a, b in zip(questions, first, second):
            va, vb = self.value(q, a), self.value(q, b)
            out.append(None if va is None or vb is None else _by_margin(va - vb, self.tie_margin))
        return out


def panel_column(fact_weight: float) -> str:
    """Column name of the panel rater at fact weight ``w``: ``pref_w{round(100 w):03d}``."""
    return f"pref_w{round(fact_weight * 100):03d}"


@dataclass
class RaterPanel:
    """The crowd rater, the fact rater and a panel rater at every fact weight, as one set of columns.

    :meth:`rate` returns ``{column: scores}`` for ``pref_w000`` … ``pref_w100`` (every weight of
    ``fact_weights``), ``pref_style`` (the panel at the pre-registered ``crowd_fact_weight``) and
    ``pref_fact`` (the fact rater alone).
    """

    crowd: CrowdRater
    fact: FactRater
    fact_weights: Sequence[float]
    crowd_fact_weight: float

    def __post_init__(self) -> None:
        names = [panel_column(w) for w in self.fact_weights]
        if len(set(names)) != len(names):
            raise ValueError(f"fact weights {list(self.fact_weights)} give duplicate columns {names}")
        self._raters = {panel_column(w): PanelRater(self.crowd, self.fact, float(w), self.crowd.tie_margin)
                        for w in self.fact_weights}
        self._style = PanelRater(self.crowd, self.fact, float(self.crowd_fact_weight), self.crowd.tie_margin)

    @property
    def columns(self) -> list[str]:
        return [*self._raters, "pref_style", "pref_fact"]

    def rate(self, questions: Sequence[QuestionLike], answers: Sequence[str], references: Sequence[str]) -> dict[str, list[float]]:
        out = {name: rate_vs_reference(rater, questions, answers, references).scores for name, rater in self._raters.items()}
        out["pref_style"] = rate_vs_reference(self._style, questions, answers, references).scores
        out["pref_fact"] = rate_vs_reference(self.fact, questions, answers, references).scores
        return out

    def record(self) -> dict:
        """What determines every verdict (saved beside the results as ``raters.json``)."""
        return {"crowd": self.crowd.record(), "fact_weights": [float(w) for w in self.fact_weights],
                "crowd_fact_weight": float(self.crowd_fact_weight),
                "columns": {**{name: f"panel rater, fact weight {r.fact_weight:g}" for name, r in self._raters.items()},
                            "pref_style": f"panel rater at the pre-registered crowd weight {self.crowd_fact_weight:g}",
                            "pref_fact": "fact rater alone (checks only what was asked)"}}


def rater_panel(ground_truth: dict, settings: Any) -> RaterPanel:
    """The panel of ``evaluate.raters`` settings (:class:`imitlib.settings.evaluate.RaterSettings`)."""
    crowd = CrowdRater(dict(settings.crowd_features), settings.length_words, settings.tie_margin)
    return RaterPanel(crowd, FactRater(ground_truth), list(settings.fact_weights), settings.crowd_fact_weight)


# ------------------------------------------------------------------------------------------------
# LLM judge through an OpenAI-compatible API
# ------------------------------------------------------------------------------------------------
JUDGE_PROMPT = (
    "Compare two answers to the same question. Judge helpfulness, correctness and clarity.\n"
    "Question: {prompt}\n"
    "Answer A: {first}\n"
    "Answer B: {second}\n"
    "Which answer is better? Reply with exactly one of: A, B, tie.\n"
    "Verdict:"
)
_JUDGE_REPLY = re.compile(r"\b(A|B|tie)\b", re.IGNORECASE)


def parse_judge_reply(reply: str) -> str | None:
    """``first`` / ``second`` / ``tie`` from a judge's reply; None when it names none of A, B, tie."""
    match = _JUDGE_REPLY.search(reply or "")
    if match is None:
        return None
    token = match.group(1).lower()
    return {"a": FIRST, "b": SECOND, "tie": TIE}[token]


@dataclass
class LLMJudge:
    """A judge model behind any OpenAI-compatible chat-completions endpoint.

    Judge model, prompt template and sampling are kept in :meth:`record`; every raw reply is kept
    in ``log`` so unparseable replies can be counted.
    """

    base_url: str
    model: str
    api_key: str = "unused"
    temperature: float = 0.0
    max_tokens: int = 8
    prompt_template: str = JUDGE_PROMPT
    seed: int = 0
    name: str = "llm"
    timeout_s: float = 120.0
    max_concurrency: int = 8
    log: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        from openai import OpenAI

        self._client = OpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout_s, max_retries=2)

    def record(self) -> dict:
        """What determines the judge's verdicts (saved beside the results)."""
        return {"base_url": self.base_url, "model": self.model, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "seed": self.seed, "prompt_template": self.prompt_template}

    def _reply(self, prompt: str, first: str, second: str) -> str:
        text = self.prompt_template.format(prompt=prompt, first=first, second=second)
        response = self._client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": text}],
            temperature=self.temperature, max_tokens=self.max_tokens, seed=self.seed,
        )
        return response.choices[0].message.content or ""

    def compare(self, questions: Sequence[QuestionLike], first: Sequence[str], second: Sequence[str]) -> list[str | None]:
        """Verdicts in input order; up to ``max_concurrency`` requests are in flight at once."""
        from concurrent.futures import ThreadPoolExecutor

        triples = list(zip([as_question(q).prompt for q in questions], first, second))
        with ThreadPoolExecutor(max_workers=max(1, self.max_concurrency)) as pool:
            replies = list(pool.map(lambda t: self._reply(*t), triples))
        out: list[str | None] = []
        for (prompt, a, b), reply in zip(triples, replies):
            choice = parse_judge_reply(reply)
            self.log.append({"prompt": prompt, "first": a, "second": b, "reply": reply, "choice": choice})
            out.append(choice)
        return out

    @property
    def unparsed_share(self) -> float:
        """Share of replies that named none of A, B, tie."""
        if not self.log:
            return math.nan
        return float(np.mean([entry["choice"] is None for entry in self.log]))


@dataclass
class JudgeTally:
    """What the judge's verdicts are worth, over every model it rated.

    Counts, per answer order, the judge prompts whose reply named no verdict; the consistency rate
    (pairs parsed in both orders whose orders agree); and the agreement of its verdicts with the
    fact rater's on the same pairs. :meth:`report` says "not computable" with the measured reason
    when more than ``max_unparsed_share`` of its prompts had no parseable verdict, or when its two
    orders agree on fewer than ``min_consistency`` of the pairs (a judge that always names the same
    position turns every pair into a tie, which is no verdict either).
    """

    results: list[PairwiseResult] = field(default_factory=list)
    fact_scores: list[list[float]] = field(default_factory=list)

    def add(self, result: PairwiseResult, fact_scores: Sequence[float]) -> None:
        self.results.append(result)
        self.fact_scores.append(list(fact_scores)[: len(result.verdicts)])

    def report(self, max_unparsed_share: float, min_consistency: float = 0.0) -> dict:
        forward = [c for r in self.results for c in r.answer_first]
        backward = [c for r in self.results for c in r.reference_first]
        prompts = len(forward) + len(backward)
        if not prompts:
            return {"status": "not computable", "reason": "the judge was asked nothing", "prompts": 0}
        unparsed_fwd = sum(c is None for c in forward) / max(len(forward), 1)
        unparsed_bwd = sum(c is None for c in backward) / max(len(backward), 1)
        unparsed = (sum(c is None for c in forward) + sum(c is None for c in backward)) / prompts
        merged = PairwiseResult([v for r in self.results for v in r.verdicts], forward, backward)
        judged = [(VERDICT_SCORE[v], f) for r, facts in zip(self.results, self.fact_scores)
                  for v, f in zip(r.verdicts, facts) if v is not None and not math.isnan(f)]
        report = {
            "prompts": prompts, "pairs": len(forward),
            "unparsed_share": unparsed, "unparsed_share_answer_first": unparsed_fwd,
            "unparsed_share_teacher_first": unparsed_bwd,
            "consistency": merged.consistency,
            "agreement_with_fact_rater": float(np.mean([a == b for a, b in judged])) if judged else math.nan,
            "pairs_with_fact_verdict": len(judged),
            "max_unparsed_share": max_unparsed_share, "min_consistency": min_consistency,
        }
        parsed = (f"{unparsed:.1%} of {prompts} judge prompts had no parseable verdict "
                  f"({unparsed_fwd:.1%} with the model's answer first, {unparsed_bwd:.1%} with the teacher's first)")
        consistency = report["consistency"]
        if unparsed > max_unparsed_share:
            report["status"] = "not computable"
            report["reason"] = f"{parsed}; above the limit {max_unparsed_share:.0%}"
        elif math.isnan(consistency) or consistency < min_consistency:
            report["status"] = "not computable"
            shown = "no pair was parsed in both orders" if math.isnan(consistency) else f"its two answer orders agreed on {consistency:.1%} of the pairs parsed in both"
            report["reason"] = f"{shown}, below the limit {min_consistency:.0%} ({parsed})"
        else:
            report["status"] = "computable"
            report["reason"] = ""
        return report
