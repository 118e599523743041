"""Cleaning of imported conversation files, the way the paper cleaned ShareGPT (with FastChat's tools).

Every file of ``imitation.import_files`` (ShareGPT, HC3, Discord, ...) goes through the same steps:

1. **read** every record (:func:`imitlib.data.importers.read_import_file`): bad records are skipped
   and listed with file, line and reason; ``strict`` stops at the first one instead;
2. **HTML to markdown** for messages that are HTML (raw ShareGPT pages), as FastChat's
   ``clean_sharegpt.py``: ``<div>``/``<span>`` dropped, markdownify, code blocks re-fenced with their
   language, the "1 / 2" regeneration counter and "Copy code" buttons removed. Unlike FastChat's
   markdownify defaults, ``_`` and ``*`` are not backslash-escaped (the answers were markdown);
3. **dedup** across all files, first occurrence kept: ``first_turn`` (same first question and
   answer, FastChat's key) or ``conversation`` (every message the same), whitespace-normalised;
4. **non-English removal** (``languages``): the language of a conversation's text outside fenced
   code blocks, identified offline by py3langid (langid.py's model, shipped in the package);
   a conversation with fewer than :data:`MIN_LANGUAGE_LETTERS` letters outside code is kept;
5. **splitting** (when ``block_tokens`` is set; the paper track: 2048) into blocks of at most that
   many student tokens at user/assistant turn
   boundaries (FastChat's ``split_long_conversation.py``); a single turn pair longer than a block
   stays one block (the trainer truncates it and counts that).

:class:`CleaningReport` counts what each step removed, per reason, with file and line.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from imitlib.data.importers import FORMATS, ImportFormatError, Problem, _Bad, check_messages, read_import_file

MIN_LANGUAGE_LETTERS = 20

_DIV = re.compile(r"<div.*?>")
_SPAN = re.compile(r"<span.*?>")
_CODE_LANG = re.compile(r"```\s*(.*?)(?:Copy code)+(.+?)\s*?```", re.DOTALL)
_REGENERATE = re.compile(r"\d+ / \d+")
_COPY_CHARS = re.compile(r"Copy\d+ chars / \d+ words")
_COPY_CODE = re.compile(r"```(.*?)Copy code\s*```")
_HTML_TAG = re.compile(r"</?(?:p|div|span|pre|code|ol|ul|li|br|hr|h[1-6]|table|thead|tbody|tr|td|th|a|b|i|em|strong|"
                       r"blockquote|img)(?:\s[^<>]*)?/?>", re.IGNORECASE)
_FENCE = re.compile(r"```.*?(?:```|$)", re.DOTALL)
_SPACE = re.compile(r"\s+")


def looks_like_html(text: str) -> bool:
    """Whether a message holds HTML markup (a tag of the kinds ShareGPT pages are made of)."""
    return _HTML_TAG.search(text) is not None


def html_to_markdown(text: str) -> str:
    """FastChat's ``html_to_markdown`` (clean_sharegpt.py), without backslash-escaping ``_`` and ``*``."""
    import markdownify

    text = _SPAN.sub("", _DIV.sub("", text))
    text = markdownify.markdownify(text, escape_underscores=False, escape_asterisks=False).strip()
    text = _CODE_LANG.sub(r"```\g<1>\n\g<2>\n```", text)
    noise = _REGENERATE.search(text)
    if noise and noise.start() == 0:
        text = text[noise.end():]
    text = _COPY_CHARS.sub("", text)
    text = _COPY_CODE.sub("", text)
    return text.replace("\n\n\n", "\n").strip()


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def known_languages() -> tuple[str, ...]:
    """The ISO 639-1 codes the language identifier knows."""
    return tuple(sorted(_identifier().nb_classes))


def language_of(messages: Sequence[dict[str, str]]) -> str | None:
    """ISO 639-1 code of a conversation's text outside fenced code (None: too little text to tell)."""
    text = "\n".join(_FENCE.sub(" ", m["content"]) for m in messages)
    if sum(ch.isalpha() for ch in text) < MIN_LANGUAGE_LETTERS:
        return None
    return _identifier().classify(text)[0]


def _normalised(text: str) -> str:
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def dedup_key(messages: Sequence[dict[str, str]], mode: str) -> tuple:
    """What two conversations share when one is a duplicate of the other."""
    turns = [m for m in messages if m["role"] != "system"]
    if mode == "first_turn":
        turns = turns[:2]
    return tuple((m["role"], _normalised(m["content"])) for m in turns)


@dataclass
class Removed:
    """A conversation read fine but removed by a cleaning step."""

    where: str
    id: str
    reason: str  # duplicate | language | empty_after_html
    detail: str


@dataclass
class CleaningReport:
    """What cleaning did to the imported files: per file, per reason, with file and line."""

    strict: bool
    files: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    removed: list[Removed] = field(default_factory=list)
    html_converted: int = 0
    read: int = 0  # conversations read from the files
    kept: int = 0  # conversations left after dedup and language removal
    split_conversations: int = 0  # kept conversations cut into more than one block
    blocks: int = 0  # blocks after splitting (= training conversations)
    over_block: int = 0  # blocks of one turn pair longer than block_tokens
    block_tokens: int | None = None

    def counts(self) -> dict[str, int]:
        """Records skipped and conversations removed, per reason (``language:xx`` per language)."""
        out: dict[str, int] = {}
        for problem in self.skipped:
            out[problem.reason] = out.get(problem.reason, 0) + 1
        for item in self.removed:
            key = f"language:{item.detail}" if item.reason == "language" else item.reason
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "strict": self.strict, "files": self.files, "read": self.read, "kept": self.kept,
            "html_converted": self.html_converted, "block_tokens": self.block_tokens,
            "split_conversations": self.split_conversations, "blocks": self.blocks, "over_block": self.over_block,
            "counts": self.counts(),
            "skipped": [{"file": p.file, "line": p.line, "reason": p.reason, "message": p.message}
                        for p in self.skipped],
            "removed": [vars(r) for r in self.removed],
        }

    def table(self):
        """One row per reason: step, reason, count, and where the first case is."""
        import pandas as pd

        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for problem in self.skipped:
            row = rows.setdefault(("bad record", problem.reason), {"count": 0, "first": str(problem)})
            row["count"] += 1
        for item in self.removed:
            reason = f"language:{item.detail}" if item.reason == "language" else item.reason
            row = rows.setdefault(("removed", reason), {"count": 0, "first": f"{item.where} ({item.id})"})
            row["count"] += 1
        return pd.DataFrame([{"step": step, "reason": reason, **info} for (step, reason), info in sorted(rows.items())],
                            columns=["step", "reason", "count", "first"])


def clean_import_files(files: Iterable[tuple[str | Path, str]], strict: bool = False, html: bool = True,
                       dedup: str = "first_turn", languages: Sequence[str] = ("en",),
                       ) -> tuple[list[dict[str, Any]], CleaningReport]:
    """Read, convert, dedup and language-filter the conversations of ``files`` ((path, format) pairs).

    Returns:
        the kept conversations in file and record order, and the report.

    Raises:
        ImportFormatError: a file that cannot be read as its format, or (``strict``) its first bad record.
        ValueError: an unknown dedup mode or language code.
    """
    if dedup not in ("first_turn", "conversation", "none"):
        raise ValueError(f"unknown dedup mode {dedup!r}: first_turn | conversation | none")
    if languages:
        unknown = sorted(set(languages) - set(known_languages()))
        if unknown:
            raise ValueError(f"language codes {unknown} are not known to the language identifier "
                             f"(known: {', '.join(known_languages())})")
    report = CleaningReport(strict=strict)
    conversations: list[dict[str, Any]] = []
    for path, format in files:
        result = read_import_file(path, format, strict=strict)
        report.files.append({"path": str(path), "format": format, "records": result.records,
                             "conversations": len(result.conversations), "bad_records": len(result.problems)})
        report.skipped.extend(result.problems)
        conversations.extend(result.conversations)
    report.read = len(conversations)

    kept: list[dict[str, Any]] = []
    first_seen: dict[tuple, str] = {}
    for conversation in conversations:
        if html and any(looks_like_html(m["content"]) for m in conversation["messages"]):
            messages = [{**m, "content": html_to_markdown(m["content"]) if looks_like_html(m["content"])
                         else m["content"]} for m in conversation["messages"]]
            try:
                check_messages(messages)
            except _Bad as exc:
                report.removed.append(Removed(conversation["where"], conversation["id"], "empty_after_html",
                                              exc.message))
                continue
            conversation = {**conversation, "messages": messages}
            report.html_converted += 1
        if dedup != "none":
            key = dedup_key(conversation["messages"], dedup)
            if key in first_seen:
                report.removed.append(Removed(conversation["where"], conversation["id"], "duplicate",
                                              f"same {dedup.replace('_', ' ')} as {first_seen[key]}"))
                continue
            first_seen[key] = conversation["where"]
        if languages:
            language = language_of(conversation["messages"])
            if language is not None and language not in languages:
                report.removed.append(Removed(conversation["where"], conversation["id"], "language", language))
                continue
        kept.append(conversation)
    report.kept = len(kept)
    return kept, report


def split_into_blocks(conversations: Sequence[dict[str, Any]], tokenizer: Any, block_tokens: int,
                      report: CleaningReport | None = None) -> list[dict[str, Any]]:
    """Cut each conversation at user/assistant turn boundaries into blocks of at most ``block_tokens``.

    A conversation that fits (counted with the student's chat template) stays as it is. Otherwise its
    blocks are filled greedily with turn pairs, a pair counted with the template together with the
    system message (which every block keeps), so a block never holds more tokens than the sum of its
    pairs. Blocks are named ``<id>_<first turn index>``, as FastChat names them.
    """
    from imitlib.data.budgets import conversation_tokens

    if block_tokens < 1:
        raise ValueError(f"block_tokens must be positive, got {block_tokens}")
    out: list[dict[str, Any]] = []
    split = over = 0
    for conversation in conversations:
        messages = conversation["messages"]
        system = messages[:1] if messages[0]["role"] == "system" else []
        turns = messages[len(system):]
        pairs = [turns[i:i + 2] for i in range(0, len(turns), 2)]
        whole = conversation_tokens(tokenizer, messages)
        if whole <= block_tokens or len(pairs) == 1:
            out.append(conversation)
            over += whole > block_tokens
            continue
        sizes = [conversation_tokens(tokenizer, system + pair) for pair in pairs]
        split += 1
        start, used = 0, 0
        for index, size in enumerate(sizes + [None]):
            if size is None or (index > start and used + size > block_tokens):
                block = [m for pair in pairs[start:index] for m in pair]
                out.append({**conversation, "id": f"{conversation['id']}_{2 * start}", "messages": system + block})
                over += index - start == 1 and used > block_tokens
                start, used = index, 0
            if size is not None:
                used += size
    if report is not None:
        report.block_tokens = block_tokens
        report.split_conversations += split
        report.blocks += len(out)
        report.over_block += over
    return out


__all__ = ["CleaningReport", "FORMATS", "ImportFormatError", "Removed", "clean_import_files", "dedup_key",
           "html_to_markdown", "known_languages", "language_of", "looks_like_html", "split_into_blocks"]
