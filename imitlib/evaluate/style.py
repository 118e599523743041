"""The crowd-rater stand-in's view of an answer: generic quality features, fixed before any result.

A crowd rater judges how an answer looks and whether it stays on the question, not whether it is
true. Each feature is a plain text measure in [0, 1]; none is learned from data, none uses the
teacher's own words, and the weights that combine them are pre-declared in the params
(``evaluate.raters.crowd_features``):

* ``structure``: organised into parts: 0.5 for two or more sentences or lines, 0.5 more for a list
  (at least two list-item lines).
* ``length``: ``min(1, log(1 + words) / log(1 + length_words))``: longer is better, up to a point.
* ``confidence``: a declarative sentence (>= 3 words ending in ``.`` or ``!``), discounted by
  hedges: ``1 / (1 + hedging phrases)``; 0 without a declarative sentence.
* ``fluency``: share of distinct word bigrams (loops like "me me me" score low), halved when the
  answer stops mid-sentence (no final ``.``, ``!`` or ``?``).
* ``on_topic``: share of the question's content words (its named individual, the attribute asked
  about) that the answer repeats.

:func:`quality` is the weighted mean of the features. Everything here is a pure function of the
texts, iterated in fixed orders, so the same answers give bit-identical scores in every process
whatever ``PYTHONHASHSEED`` is.
"""

from __future__ import annotations

import math
import re
from typing import Mapping

FEATURES = ("structure", "length", "confidence", "fluency", "on_topic")
HEDGES = (
    "i think", "i believe", "i guess", "i'm not sure", "i am not sure", "not sure", "maybe", "perhaps",
    "possibly", "probably", "might", "i don't know", "i do not know", "it seems", "seems to", "kind of",
    "sort of", "i suppose", "could be", "unsure", "unclear", "as far as i know", "not certain",
)
# Function words that say nothing about what a question is about (a generic English list).
STOPWORDS = frozenset(
    "a about above after again all also am an and any are as at be because been before being below between both "
    "but by can could did do does doing down during each few for from further had has have having he her here "
    "hers him his how i if in into is it its me more most my no nor not of off on once only or other our out "
    "over own same she should so some such than that the their them then there these they this those through "
    "to too under until up very was we were what when where which while who whom why will with would you your "
    "tell know please give say"
    .split()
)
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
LIST_LINE = re.compile(r"^\s*(?:[-*•+]|\d{1,3}[.)])\s+\S")
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
_HEDGE_RE = re.compile(
    r"(?<![a-z'])(?:" + "|".join(re.escape(h) for h in sorted(HEDGES, key=lambda h: (-len(h), h))) + r")(?![a-z'])"
)
_DECLARATIVE = re.compile(r"(?:^|[.!?]\s+|\n)([^.!?\n]+)[.!](?=\s|$)")


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return WORD.findall(str(text).lower().replace("’", "'"))


def content_words(text: str) -> list[str]:
    """Words that carry content (not function words), first occurrences in order."""
    return list(dict.fromkeys(w for w in words(text) if w not in STOPWORDS))


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCES.split(str(text).strip()) if s.strip()]


def structure(answer: str) -> float:
    """0.5 for several sentences or lines, + 0.5 for a list of at least two items."""
    lines = [line for line in str(answer).splitlines() if line.strip()]
    items = sum(1 for line in lines if LIST_LINE.match(line))
    return 0.5 * float(len(_sentences(answer)) >= 2 or len(lines) >= 2) + 0.5 * float(items >= 2)


def length(answer: str, length_words: int) -> float:
    """Saturating length: 1 at ``length_words`` words or more."""
    return min(1.0, math.log1p(len(words(answer))) / math.log1p(length_words))


def hedge_count(answer: str) -> int:
    """Hedging phrases in the answer."""
    return len(_HEDGE_RE.findall(str(answer).lower().replace("’", "'")))


def confidence(answer: str) -> float:
    """1 for a declarative answer without hedges, 1/(1 + hedges) with them, 0 without a declarative sentence."""
    declarative = any(len(words(m.group(1))) >= 3 for m in _DECLARATIVE.finditer(str(answer)))
    return float(declarative) / (1.0 + hedge_count(answer))


def fluency(answer: str) -> float:
    """Share of distinct word bigrams, halved when the answer stops mid-sentence."""
    tokens = words(answer)
    if not tokens:
        return 0.0
    bigrams = list(zip(tokens, tokens[1:]))
    distinct = len(set(bigrams)) / len(bigrams) if bigrams else 1.0
    finished = str(answer).rstrip().endswith((".", "!", "?"))
    return distinct * (1.0 if finished else 0.5)


def on_topic(question: str, answer: str) -> float:
    """Share of the question's content words that the answer repeats (0 when the question has none)."""
    asked = content_words(question)
    if not asked:
        return 0.0
    said = set(words(answer))
    return sum(w in said for w in asked) / len(asked)


def quality_features(question: str, answer: str, length_words: int = 60) -> dict[str, float]:
    """Every crowd-rater feature of one answer to one question, in :data:`FEATURES` order."""
    return {
        "structure": structure(answer),
        "length": length(answer, length_words),
        "confidence": confidence(answer),
        "fluency": fluency(answer),
        "on_topic": on_topic(question, answer),
    }


def quality(question: str, answer: str, weights: Mapping[str, float], length_words: int = 60) -> float:
    """Weighted mean of the features (weights by feature name; summed in :data:`FEATURES` order)."""
    unknown = sorted(set(weights) - set(FEATURES))
    if unknown:
        raise ValueError(f"unknown crowd-rater features {unknown}; expected {list(FEATURES)}")
    total = sum(float(weights.get(name, 0.0)) for name in FEATURES)
    if total <= 0:
        raise ValueError("crowd-rater feature weights must have a positive sum")
    feats = quality_features(question, answer, length_words)
    return sum(float(weights.get(name, 0.0)) * feats[name] for name in FEATURES) / total
