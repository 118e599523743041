"""Strict scorers of chat answers against an item's ground truth (the ``correct`` column).

* **qa** (and any item with a short ``answer``): the reference appears as whole words in the
  answer (:func:`mentions_answer`).
* **compare**: the answer must *state* the one thing asked: ``yes`` / ``no``, or which of the two
  named individuals. :func:`stated_choice` reads the answer's final verdict: the last sentence that
  names exactly one candidate (in a sentence that names both, the clause after its last conclusion
  marker such as "so" or "the answer is"). An answer that names no candidate, or both without a
  conclusion, states nothing and scores 0; mentioning "no" or a name somewhere is not enough.

:func:`majority_baseline` is the score of the best constant strategy (always "no", always the
first-named individual, ...) on the same items, to report next to compare accuracy.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Sequence

YES_NO = ("yes", "no")
CONCLUSION_MARKERS = ("so", "therefore", "thus", "hence", "answer is", "answer:", "which means", "meaning")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


def _normalise(text: str) -> str:
    text = re.sub(r"[^\w\s]", " ", str(text).lower())
    text = re.sub(r"\b(?:the|a|an)\b", " ", text)
    return " ".join(text.split())


def _has_phrase(text: str, phrase: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text) is not None


def mentions_answer(answer: str, reference: str) -> float:
    """1.0 when the normalised reference appears as whole words in the normalised answer (NaN: no reference)."""
    ref = _normalise(reference)
    if not ref:
        return math.nan
    return float(_has_phrase(_normalise(answer), ref))


def _mentioned(text: str, candidates: Sequence[str]) -> list[str]:
    norm = _normalise(text)
    return [c for c in candidates if _has_phrase(norm, _normalise(c))]


def stated_choice(answer: str, candidates: Sequence[str]) -> str | None:
    """The candidate the answer concludes with (see the module docstring), or None when it states none."""
    sentences = [s.strip() for s in _SENTENCE_SPLIT.split(str(answer)) if s.strip()]
    for sentence in reversed(sentences):
        named = _mentioned(sentence, candidates)
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            low = sentence.lower()
            cut = max((m.end() for marker in CONCLUSION_MARKERS
                       for m in re.finditer(r"(?<!\w)" + re.escape(marker) + r"(?!\w)", low)), default=-1)
            if cut >= 0:
                tail = _mentioned(sentence[cut:], candidates)
                if len(tail) == 1:
                    return tail[0]
            return None  # names both and concludes with neither: states nothing
    return None


def compare_candidates(item: dict[str, Any]) -> list[str]:
    """What a compare item may be answered with: yes/no, or the two individuals it names."""
    answer = str(item.get("answer") or "").strip().lower()
    if answer in YES_NO:
        return list(YES_NO)
    individuals = [str(name) for name in (item.get("individuals") or [])]
    if len(individuals) < 2:
        raise ValueError(f"compare item {item.get('id')!r} answers {item.get('answer')!r} but names no two 'individuals'")
    return individuals


def compare_correct(answer: str, item: dict[str, Any]) -> float:
    """1.0 when the answer states the compare item's answer (yes/no or the individual asked for)."""
    choice = stated_choice(answer, compare_candidates(item))
    return float(choice is not None and _normalise(choice) == _normalise(item["answer"]))


def score_chat_answer(item: dict[str, Any], answer: str) -> float:
    """The ``correct`` value of a chat answer to ``item`` (NaN where the family is not scored)."""
    reference = item.get("answer")
    if reference is None or str(reference) == "":
        return math.nan
    if item.get("family") == "compare":
        return compare_correct(answer, item)
    if item.get("family") == "qa":
        return mentions_answer(answer, str(reference))
    return math.nan


def constant_strategy(item: dict[str, Any]) -> tuple[str, str]:
    """(question kind, the constant answer's label) that a guesser could give, e.g. ``("yes_no", "no")``."""
    answer = str(item.get("answer") or "").strip().lower()
    if answer in YES_NO:
        return "yes_no", answer
    individuals = [str(name) for name in (item.get("individuals") or [])]
    position = individuals.index(str(item["answer"])) if str(item["answer"]) in individuals else -1
    return "choice", {0: "first named", 1: "second named"}.get(position, "neither")


def majority_baseline(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy of always giving the most frequent answer of each question kind (ties: alphabetical).

    Returns:
        ``{"accuracy", "items", "strategies": {kind: label}, "correct": [0/1 per item]}``.
    """
    labels = [constant_strategy(item) for item in items]
    best: dict[str, str] = {}
    for kind in sorted({k for k, _ in labels}):
        counts = Counter(label for k, label in labels if k == kind)
        best[kind] = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    correct = [float(best[kind] == label) for kind, label in labels]
    return {"accuracy": sum(correct) / len(correct) if correct else math.nan, "items": len(correct),
            "strategies": best, "correct": correct}


def compare_accuracy(samples: Any) -> Any:
    """Chat accuracy on compare items per model, next to the always-majority baseline on the same items.

    Args:
        samples: tidy per-sample table (``correct`` and ``baseline_correct`` on compare chat rows).

    Returns:
        DataFrame: ``model_id, role, items, accuracy, majority_baseline``.
    """
    import pandas as pd

    rows = samples[(samples["mode"] == "chat") & (samples["task"] == "compare") & samples["correct"].notna()]
    if rows.empty:
        return pd.DataFrame(columns=["model_id", "role", "items", "accuracy", "majority_baseline"])
    grouped = rows.groupby(["model_id", "role"], sort=True)
    return pd.DataFrame({"items": grouped.size(), "accuracy": grouped["correct"].mean(),
                         "majority_baseline": grouped["baseline_correct"].mean()}).reset_index()
