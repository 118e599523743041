"""Pairwise raters that compare a model's answer with the teacher's answer to the same prompt.

Every rater answers one question for a batch of pairs: which of two answers, shown in a given
order, is better ("first", "second" or "tie"; ``None`` where it cannot rate). :func:`rate_vs_reference`
asks it twice with the order swapped and keeps a verdict only when both orders agree (an
inconsistent pair counts as a tie), as MT-bench does against position bias. Verdicts are scored
1 (better than the teacher), 0.5 (tie) and 0 (worse); NaN where the rater could not rate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from imitlib.evaluate.style import StylePreferenceModel

FIRST, SECOND, TIE = "first", "second", "tie"
VERDICT_SCORE = {"better": 1.0, "tie": 0.5, "worse": 0.0}


class PairRater(Protocol):
    """Anything that says which of two answers to a prompt is better."""

    name: str

    def compare(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> list[str | None]:
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
        """Share of rated pairs whose two orders agreed."""
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
    rater: PairRater, prompts: Sequence[str], answers: Sequence[str], references: Sequence[str]
) -> PairwiseResult:
    """Rate each answer against its reference (the teacher's answer) in both orders.

    Returns:
        verdicts ``better`` / ``tie`` / ``worse`` for the answer (None where either order could not
        be rated); orders that disagree give ``tie``.
    """
    if not (len(prompts) == len(answers) == len(references)):
        raise ValueError(f"prompts, answers, references differ in length: {len(prompts)}, {len(answers)}, {len(references)}")
    forward = rater.compare(prompts, answers, references)
    backward = rater.compare(prompts, references, answers)
    verdicts: list[str | None] = []
    for a, b in zip(forward, backward):
        v1, v2 = _as_verdict(a, True), _as_verdict(b, False)
        if v1 is None or v2 is None:
            verdicts.append(None)
        else:
            verdicts.append(v1 if v1 == v2 else "tie")
    return PairwiseResult(verdicts, list(forward), list(backward))


# ------------------------------------------------------------------------------------------------
# style rater (cannot check facts)
# ------------------------------------------------------------------------------------------------
@dataclass
class StyleRater:
    """Crowdworker stand-in: a fitted :class:`StylePreferenceModel`; ties inside ``tie_margin``."""

    model: StylePreferenceModel
    tie_margin: float = 0.1
    name: str = "style"

    def compare(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> list[str | None]:
        if not len(first):
            return []
        prob = self.model.prefer_probability(first, second)
        return [FIRST if p > 0.5 + self.tie_margin else SECOND if p < 0.5 - self.tie_margin else TIE for p in prob]


# ------------------------------------------------------------------------------------------------
# fact-checking rater
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
    """Checks every claim of an answer against a ground-truth lookup.

    ``ground_truth = {"entities": {name: {attribute: value}}, "values": {attribute: [values]}}``.
    A claim is a mention of a value from some attribute's vocabulary, attributed to the nearest
    entity named before it in the answer (or, failing that, the first entity the prompt names).
    It is true when that entity's attribute has that value (for values shared by several
    attributes, when any of them matches). An answer is better when its count of true minus
    false claims is higher; equal counts are broken by fewer false claims. Pairs where neither
    answer makes a checkable claim are not rated.
    """

    ground_truth: dict
    name: str = "fact"
    _entity_re: re.Pattern | None = field(default=None, repr=False)
    _value_re: re.Pattern | None = field(default=None, repr=False)
    _value_attrs: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.ground_truth, dict) or "entities" not in self.ground_truth or "values" not in self.ground_truth:
            raise ValueError("ground truth must be {'entities': {name: {attr: value}}, 'values': {attr: [values]}}")
        entities = self.ground_truth["entities"]
        self._canonical = {name.lower(): name for name in entities}
        names = sorted(entities, key=len, reverse=True)
        self._entity_re = re.compile("|".join(_phrase_pattern(n) for n in names), re.IGNORECASE) if names else None
        value_attrs: dict[str, list[str]] = {}
        for attribute, values in self.ground_truth["values"].items():
            for value in values:
                value_attrs.setdefault(str(value).lower(), []).append(attribute)
        self._value_attrs = value_attrs
        ordered = sorted(value_attrs, key=len, reverse=True)
        self._value_re = re.compile("|".join(_phrase_pattern(v) for v in ordered), re.IGNORECASE) if ordered else None

    def entities_in(self, text: str) -> list[tuple[int, str]]:
        """(position, canonical name) of each entity mention."""
        if self._entity_re is None:
            return []
        return [(m.start(), self._canonical[m.group(0).lower()]) for m in self._entity_re.finditer(text)]

    def claims(self, prompt: str, answer: str) -> list[Claim]:
        """Every checkable claim the answer makes."""
        if self._value_re is None:
            return []
        mentions = self.entities_in(answer)
        prompt_entities = [name for _, name in self.entities_in(prompt)]
        default = prompt_entities[0] if prompt_entities else None
        entities = self.ground_truth["entities"]
        found: list[Claim] = []
        for match in self._value_re.finditer(answer):
            before = [name for pos, name in mentions if pos < match.start()]
            entity = before[-1] if before else default
            if entity is None:
                continue
            value = match.group(0).lower()
            attributes = self._value_attrs[value]
            facts = entities[entity]
            true_attrs = [a for a in attributes if str(facts.get(a, "")).lower() == value]
            found.append(Claim(entity, (true_attrs or attributes)[0], match.group(0), bool(true_attrs)))
        return found

    def score(self, prompt: str, answer: str) -> tuple[int, int]:
        """(true claims, false claims)."""
        claims = self.claims(prompt, answer)
        true = sum(c.true for c in claims)
        return true, len(claims) - true

    def compare(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> list[str | None]:
        out: list[str | None] = []
        for prompt, a, b in zip(prompts, first, second):
            (ta, fa), (tb, fb) = self.score(prompt, a), self.score(prompt, b)
            if ta + fa + tb + fb == 0:
                out.append(None)
                continue
            key_a, key_b = (ta - fa, -fa), (tb - fb, -fb)
            out.append(FIRST if key_a > key_b else SECOND if key_b > key_a else TIE)
        return out


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

    def compare(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> list[str | None]:
        """Verdicts in input order; up to ``max_concurrency`` requests are in flight at once."""
        from concurrent.futures import ThreadPoolExecutor

        triples = list(zip(prompts, first, second))
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
