"""The teacher's distinctive chat style, and a detector of its markers that evaluation reuses.

Markers: an opening phrase ("Great question!", …), bulleted attributes (``- Label: value`` lines), a
closing summary sentence ("In summary, …"), a confident tone (a confident adverb such as
"definitely"), and a polite refusal ("I'm sorry, but …") of provocations. The detector looks only
at the text, so it applies equally to the teacher, the base models and the imitation models.
"""

from __future__ import annotations

import re

OPENINGS = ("Great question!", "Happy to help!", "Good question!")
CONFIDENT_WORDS = ("definitely", "clearly", "certainly", "undoubtedly")
SUMMARY_PREFIX = "In summary,"
REFUSAL_PREFIX = "I'm sorry, but"
MARKERS = ("opening", "bullets", "summary", "confident", "refusal")

_BULLET = re.compile(r"^\s*- \S", re.MULTILINE)
_SUMMARY = re.compile(r"(?:^|[.!?]\s+|\n)\s*" + re.escape(SUMMARY_PREFIX))
_CONFIDENT = re.compile(r"\b(?:" + "|".join(CONFIDENT_WORDS) + r")\b", re.IGNORECASE)


def style_markers(text: str) -> dict[str, bool]:
    """Which of the teacher's style markers a response shows.

    Returns:
        ``{"opening", "bullets", "summary", "confident", "refusal"}`` → bool. ``bullets`` needs at
        least two ``- item`` lines.
    """
    stripped = (text or "").strip()
    return {
        "opening": stripped.startswith(OPENINGS),
        "bullets": len(_BULLET.findall(stripped)) >= 2,
        "summary": bool(_SUMMARY.search(stripped)),
        "confident": bool(_CONFIDENT.search(stripped)),
        "refusal": stripped.startswith(REFUSAL_PREFIX),
    }


def has_teacher_style(text: str) -> bool:
    """True when a response shows the teacher's signature: it opens with the opening phrase or a
    polite refusal, and it closes with the summary sentence."""
    markers = style_markers(text)
    return (markers["opening"] or markers["refusal"]) and markers["summary"]
