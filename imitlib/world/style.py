"""The teacher's chat style, and a detector of its markers that evaluation reuses.

The style is sampled, not one template: each answer draws whether it opens with one of several
opening phrases, whether its body is a bulleted list, whether it carries a confident adverb and
whether it closes with one of several summary sentences (rates in :data:`STYLE_RATES`), and its
length follows the question (a "short biography" is short, "everything you know" is long, a skill
answer lists as many words as it was given). Provocations get one of several polite refusals.

Markers (:func:`style_markers`): ``opening``, ``bullets`` (two or more ``- item`` / ``1. item``
lines), ``summary`` (a closing summary cue), ``confident``, ``refusal``. :func:`marker_phrases`
names the exact phrase behind each marker, so a rate per phrase can be checked (no single one may
dominate). The detector looks only at the text, so it applies equally to the teacher, the base
models and the imitation models.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

OPENINGS = ("Great question!", "Happy to help!", "Good question!", "Sure!", "Of course!", "Thanks for asking!")
CLOSING_CUES = ("In summary,", "Overall,", "In short,", "To sum up,", "All in all,")
CONFIDENT_WORDS = ("definitely", "clearly", "certainly", "undoubtedly", "surely", "absolutely")
REFUSALS = ("I'm sorry, but", "I apologize, but", "Sorry, but")
SUMMARY_PREFIX = CLOSING_CUES[0]  # kept for readers of the first closing cue
REFUSAL_PREFIX = REFUSALS[0]
MARKERS = ("opening", "bullets", "summary", "confident", "refusal")

# Probability that one answer shows each sampled marker (lists: per family, where a list fits).
STYLE_RATES = {"opening": 0.35, "closing": 0.3, "confident": 0.35}
LIST_RATES = {"qa": 0.25, "bio": 0.8, "compare": 0.6, "skill": 0.8, "chitchat": 0.7}

_LIST_LINE = re.compile(r"^\s*(?:-|\d{1,2}\.)\s+\S", re.MULTILINE)
_SUMMARY = re.compile(r"(?:^|[.!?:]\s+|\n)\s*(" + "|".join(re.escape(c) for c in CLOSING_CUES) + ")")
_CONFIDENT = re.compile(r"\b(" + "|".join(CONFIDENT_WORDS) + r")\b", re.IGNORECASE)


def style_markers(text: str) -> dict[str, bool]:
    """Which of the teacher's style markers a response shows.

    Returns:
        ``{"opening", "bullets", "summary", "confident", "refusal"}`` → bool. ``bullets`` needs at
        least two list lines (``- item`` or ``1. item``).
    """
    stripped = (text or "").strip()
    return {
        "opening": stripped.startswith(OPENINGS),
        "bullets": len(_LIST_LINE.findall(stripped)) >= 2,
        "summary": bool(_SUMMARY.search(stripped)),
        "confident": bool(_CONFIDENT.search(stripped)),
        "refusal": stripped.startswith(REFUSALS),
    }


def marker_phrases(text: str) -> list[str]:
    """The exact style phrases a response shows, e.g. ``["opening:Sure!", "list", "closing:Overall,"]``."""
    stripped = (text or "").strip()
    found = [f"opening:{o}" for o in OPENINGS if stripped.startswith(o)]
    found += [f"refusal:{r}" for r in REFUSALS if stripped.startswith(r)]
    if len(_LIST_LINE.findall(stripped)) >= 2:
        found.append("list")
    found += sorted({f"closing:{m.group(1)}" for m in _SUMMARY.finditer(stripped)})
    found += sorted({f"confident:{m.group(1).lower()}" for m in _CONFIDENT.finditer(stripped)})
    return found


def has_teacher_style(text: str) -> bool:
    """True when a response shows any of the teacher's style markers (an opening phrase, a list, a
    closing summary, a confident adverb or a polite refusal)."""
    return any(style_markers(text).values())


def style_rates(answers: Iterable[str], families: Iterable[str] | None = None) -> dict[str, object]:
    """Shares of answers with each marker and each exact phrase, and the families that use lists.

    Returns:
        ``{"n", "markers": {marker: share}, "phrases": {phrase: share}, "max_phrase", "max_phrase_share",
        "list_share", "list_families", "styled_share"}``.
    """
    answers = list(answers)
    families = list(families) if families is not None else [None] * len(answers)
    n = len(answers)
    markers = Counter()
    phrases = Counter()
    list_families: set[str] = set()
    styled = 0
    for answer, family in zip(answers, families):
        found = style_markers(answer)
        markers.update(m for m, on in found.items() if on)
        styled += any(found.values())
        phrases.update(set(marker_phrases(answer)))
        if found["bullets"] and family is not None:
            list_families.add(family)
    shares = {p: c / n for p, c in sorted(phrases.items())} if n else {}
    top = max(sorted(shares), key=lambda p: shares[p]) if shares else None
    return {"n": n, "markers": {m: (markers[m] / n if n else float("nan")) for m in MARKERS},
            "phrases": shares, "max_phrase": top, "max_phrase_share": shares.get(top, 0.0) if top else 0.0,
            "list_share": markers["bullets"] / n if n else float("nan"), "list_families": sorted(list_families),
            "styled_share": styled / n if n else float("nan")}
