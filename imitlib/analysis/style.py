"""Generic text-style metrics (Table 2 analog): lists, summary endings, overlap, length, tone.

These are plain text measures. They know nothing of any particular world or teacher, so the same
numbers mean the same thing on the miniature world and on real models.

Definitions:
    * **list**: at least two lines that start with a list marker (``-``, ``*``, ``•``, ``1.``, ``2)``).
    * **summary ending**: structure, not cue words. The answer has a body and, separated from it by
      a line break, a final prose paragraph that restates the body: at least
      :data:`SUMMARY_MIN_SHARED` of its content words occur in the body, and they make up at least
      :data:`SUMMARY_MIN_SHARE` of its content words. A cue phrase ("In summary", …) neither makes
      nor breaks a summary; a closing line with new content, or one glued to the body's paragraph,
      is not one.
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
SUMMARY_MIN_SHARED = 2     # content words a closing paragraph must share with the body to restate it
SUMMARY_MIN_SHARE = 0.4    # ... and the share of its own content words they must make up
# function words that do not count as restated content (a generic English list)
STOPWORDS = frozenset(
    "a about above after again all also am an and any are as at be because been before being below between both "
    "but by can could did do does doing down during each few for from further had has have having he her here "
    "hers him his how i if in into is it its me more most my no nor not of off on once only or other our out "
    "over own same she should so some such than that the their them then there these they this those through "
    "to too under until up very was we were what when where which while who whom why will with would you your"
    .split()
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


def _paragraphs(text: str) -> list[tuple[str, str]]:
    """Blocks of the text, each ``("list", items)`` (a run of list lines) or ``("prose", line)``.

    Every prose line is a paragraph of its own: chat answers separate paragraphs with single line
    breaks as often as with blank lines.
    """
    blocks: list[tuple[str, list[str]]] = []
    for line in str(text).splitlines():
        if not line.strip():
            blocks.append(("gap", []))
            continue
        if LIST_LINE_RE.match(line):
            if blocks and blocks[-1][0] == "list":
                blocks[-1][1].append(line.strip())
            else:
                blocks.append(("list", [line.strip()]))
        else:
            blocks.append(("prose", [line.strip()]))
    return [(kind, " ".join(lines)) for kind, lines in blocks if kind != "gap"]


def _content_words(text: str) -> list[str]:
    return list(dict.fromkeys(w for w in words(text) if w not in STOPWORDS))


def ends_with_summary(text: str) -> bool:
    """True when a final prose paragraph, separated from the body, restates the body's content."""
    blocks = _paragraphs(text)
    if len(blocks) < 2 or blocks[-1][0] != "prose":
        return False
    closing = _content_words(blocks[-1][1])
    body = set(_content_words(" ".join(b for _, b in blocks[:-1])))
    shared = sum(w in body for w in closing)
    return bool(closing) and shared >= SUMMARY_MIN_SHARED and shared / len(closing) >= SUMMARY_MIN_SHARE


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
