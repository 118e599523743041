"""Generic text-style metrics (Table 2 analog): lists, summary endings, overlap, length, tone.

These are plain text measures. They know nothing of any particular world or teacher, so the same
numbers mean the same thing on the miniature world and on real models.

Definitions:
    * **list**: at least two lines that start with a list marker (``-``, ``*``, ``•``, ``1.``, ``2)``).
    * **summary ending**: the last block (paragraph or list run) is prose that either opens with a
      summary cue ("In summary", "Overall", "In short", …) or follows a list, i.e. a closing paragraph
      after a bulleted body.
    * **unigram overlap**: unigram F1 (ROUGE-1 F, multiset counts, lower-cased word tokens) × 100.
    * **length**: number of word tokens.
    * **authoritative tone**: at least one declarative sentence (≥ 3 words ending in ``.`` or ``!``)
      and no hedging phrase from :data:`HEDGES`.
"""

from __future__ import annotations

import re
from collections import Counter

WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
LIST_LINE_RE = re.compile(r"^\s*(?:[-*•+]|\d{1,3}[.)])\s+\S")
SUMMARY_CUES = (
    "in summary", "to summarize", "to summarise", "in conclusion", "overall", "in short", "all in all",
    "to sum up", "in sum", "ultimately", "all told", "in brief", "summing up", "altogether",
)
HEDGES = (
    "i think", "i believe", "i guess", "i'm not sure", "i am not sure", "not sure", "maybe", "perhaps",
    "possibly", "probably", "might", "i don't know", "i do not know", "it seems", "seems to", "kind of",
    "sort of", "i suppose", "could be", "i'm unsure", "unclear", "as far as i know", "not certain",
)
# one alternation, longest phrases first, so "i'm not sure" counts once rather than also as "not sure"
_HEDGE_RE = re.compile(
    r"(?<![a-z'])(?:" + "|".join(re.escape(h) for h in sorted(HEDGES, key=len, reverse=True)) + r")(?![a-z'])"
)
_DECLARATIVE_RE = re.compile(r"(?:^|[.!?]\s+|\n)([^.!?\n]+)[.!](?=\s|$)")


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``."""
    return WORD_RE.findall(str(text).lower())


def word_count(text: str) -> int:
    """Number of word tokens."""
    return len(words(text))


def list_items(text: str) -> int:
    """Number of lines that start with a list marker."""
    return sum(1 for line in str(text).splitlines() if LIST_LINE_RE.match(line))


def uses_list(text: str) -> bool:
    """True when the text contains a list (at least two list-marker lines)."""
    return list_items(text) >= 2


def _blocks(text: str) -> list[tuple[str, str]]:
    """Split text into blocks: runs of list lines (``"list"``) and paragraphs (``"prose"``)."""
    blocks: list[tuple[str, list[str]]] = []
    for line in str(text).splitlines():
        if not line.strip():
            if blocks and blocks[-1][0] == "prose":
                blocks.append(("gap", []))
            continue
        kind = "list" if LIST_LINE_RE.match(line) else "prose"
        if blocks and blocks[-1][0] == kind:
            blocks[-1][1].append(line.strip())
        else:
            if blocks and blocks[-1][0] == "gap":
                blocks.pop()
            blocks.append((kind, [line.strip()]))
    if blocks and blocks[-1][0] == "gap":
        blocks.pop()
    return [(kind, " ".join(lines)) for kind, lines in blocks if kind != "gap"]


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


def ends_with_summary(text: str) -> bool:
    """True when the answer closes with a summary: a final prose block after a list, or a cue opener."""
    blocks = _blocks(text)
    if not blocks or blocks[-1][0] != "prose":
        return False
    last = blocks[-1][1]
    if any(kind == "list" for kind, _ in blocks[:-1]):
        return True
    if last.lower().startswith(SUMMARY_CUES):
        return True
    final_sentence = _sentences(last)[-1].lower()
    return len(_sentences(text)) > 1 and final_sentence.startswith(SUMMARY_CUES)


def unigram_overlap(answer: str, reference: str) -> float:
    """Unigram F1 between two texts, × 100 (0 when either is empty)."""
    a, r = Counter(words(answer)), Counter(words(reference))
    common = sum((a & r).values())
    if not common:
        return 0.0
    precision = common / sum(a.values())
    recall = common / sum(r.values())
    return 100.0 * 2 * precision * recall / (precision + recall)


def hedge_count(text: str) -> int:
    """Number of hedging phrases (from :data:`HEDGES`) in the text."""
    low = str(text).lower().replace("’", "'")
    return len(_HEDGE_RE.findall(low))


def is_authoritative(text: str) -> bool:
    """True for a confident answer: a declarative sentence of ≥ 3 words and no hedging phrase."""
    if hedge_count(text) > 0:
        return False
    return any(len(words(m.group(1))) >= 3 for m in _DECLARATIVE_RE.finditer(str(text)))


def style_features(text: str) -> dict[str, float]:
    """Every per-text style feature used by the analysis, as numbers."""
    return {
        "uses_list": float(uses_list(text)),
        "ends_with_summary": float(ends_with_summary(text)),
        "authoritative": float(is_authoritative(text)),
        "length": float(word_count(text)),
        "list_items": float(list_items(text)),
    }
