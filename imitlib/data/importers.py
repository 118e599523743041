"""Importers for the conversation files users already have, into one conversation format.

Formats:

- ``sharegpt``: JSON, a list of ``{"id", "conversations": [{"from", "value"}]}``;
- ``alpaca``: JSON, a list of ``{"instruction", "input", "output"}``;
- ``hc3``: JSON lines, ``{"question", "chatgpt_answers"}`` per line; one conversation per ChatGPT answer;
- ``messages``: JSON lines, ``{"messages": [{"role", "content"}]}`` per line;
- ``discord``: JSON lines, one Discord message per line with the fields of a DiscordChatExporter JSON
  export (``id``, ``content``, ``author: {"isBot"}``, ``reference: {"messageId"}``), e.g. from
  ``jq -c '.messages[]' export.json``. A bot's reply to a user's message is a turn pair; a user's reply
  to a bot's answer continues that thread; each thread becomes one conversation.

Every conversation becomes ``{"id", "source", "where", "messages"}`` (``where`` is ``file:line``) with
roles ``system`` / ``user`` / ``assistant``, starting (after an optional system message) with a user
turn and ending with an assistant turn.

Two kinds of problem:

- a file that cannot be read as its format at all (missing, not UTF-8 JSON array, truncated array,
  JSON lines given as an array, no conversation left): always :class:`ImportFormatError`;
- a bad record (invalid JSON line, missing key, unknown speaker, turns out of order, empty
  message, ...): a :class:`Problem` naming file, line and reason. :func:`read_import_file` collects
  them and skips the record; with ``strict=True`` the first one raises :class:`ImportFormatError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from imitlib.config import input_path

ROLE_ALIASES = {
    "human": "user", "user": "user", "prompter": "user",
    "gpt": "assistant", "chatgpt": "assistant", "assistant": "assistant", "bing": "assistant", "bard": "assistant",
    "model": "assistant", "system": "system",
}
JSON_ARRAY_FORMATS = ("sharegpt", "alpaca")  # a JSON array of records; the other formats are JSON lines


class ImportFormatError(ValueError):
    """A conversation file does not match its format; the message names the file and line."""


@dataclass(frozen=True)
class Problem:
    """A record skipped on import: where it is, a short reason key and the full message."""

    file: str
    line: int
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class _Bad(Exception):
    """A bad record (the message leaves out the file and line, which the caller knows)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class ImportResult:
    """What one file gave: its conversations, the records read and the bad records skipped."""

    path: Path
    format: str
    records: int = 0
    conversations: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _shown(value: str, limit: int = 60) -> str:
    """``repr`` of a value from the file, cut short so a huge field cannot flood the error message."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, element) for each element of a top-level JSON array, parsed element by element.

    Any syntax error ends the file (the records after it cannot be found), so it is an
    :class:`ImportFormatError`, not a bad record.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ImportFormatError(f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    decoder = json.JSONDecoder()
    text = text[1:] if text.startswith("\ufeff") else text
    position = len(text) - len(text.lstrip())
    if position >= len(text) or text[position] != "[":
        start = text[position:position + 20]
        raise ImportFormatError(f"{path}:{_line_of(text, position)}: expected a JSON array of records, but the file "
                                f"starts with {start!r}")
    position += 1
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position < len(text) and text[position] == "]":
            rest = text[position + 1:]
            if rest.strip():
                after = position + 1 + len(rest) - len(rest.lstrip())
                raise ImportFormatError(f"{path}:{_line_of(text, after)}: unexpected data after the array")
            return
        try:
            element, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(f"{path}:{_line_of(text, position)}: invalid JSON in the record starting on this "
                                    f"line ({exc.msg} at line {exc.lineno}, column {exc.colno}); the records after "
                                    "it cannot be read") from None
        yield _line_of(text, position), element
        position = end
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position < len(text) and text[position] == ",":
            position += 1
        elif position < len(text) and text[position] == "]":
            continue
        else:
            raise ImportFormatError(f"{path}:{_line_of(text, min(position, len(text) - 1))}: "
                                    "expected ',' or ']' after an array element")


def _json_lines(path: Path, format: str) -> Iterator[tuple[int, Any]]:
    """(line, record) for each non-empty line of a JSONL file; a line that is not UTF-8 JSON gives a
    :class:`_Bad` in place of the record."""
    first = True
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if first and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                first = False
                yield number, _Bad("not_utf8", f"not UTF-8 text ({exc.reason})")
                continue
            if not line.strip():
                continue
            if first and (line.lstrip().startswith("[") or line.strip() == "{"):
                hint = " (for a DiscordChatExporter export: jq -c '.messages[]')" if format == "discord" else ""
                raise ImportFormatError(f"{path}:{number}: format {format!r} is JSON lines (one object per line), "
                                        f"but the file starts with {line.strip()[:20]!r}: one JSON document over "
                                        f"many lines{hint}")
            first = False
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, _Bad("invalid_json", f"invalid JSON ({exc.msg}, column {exc.colno})")


def _require(record: Any, key: str, kind: type, where: str = "") -> Any:
    prefix = f"{where}: " if where else ""
    if not isinstance(record, dict):
        raise _Bad("not_an_object", f"{prefix}expected an object, got {type(record).__name__}")
    if key not in record:
        raise _Bad("missing_key", f"{prefix}missing key {key!r}")
    value = record[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Bad("wrong_type", f"{prefix}{key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def check_messages(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The conversation rules every importer applies; raises :class:`_Bad` naming the broken one."""
    turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if not turns:
        raise _Bad("no_turns", "conversation has no turns")
    if turns[0]["role"] != "user":
        raise _Bad("turn_order", f"conversation must start with a user turn, got {turns[0]['role']!r}")
    for previous, current in zip(turns, turns[1:]):
        if current["role"] == previous["role"] or current["role"] == "system":
            raise _Bad("turn_order", f"turns must alternate user/assistant, found {previous['role']!r} "
                                     f"then {current['role']!r}")
    if turns[-1]["role"] != "assistant":
        raise _Bad("no_answer", "conversation must end with an assistant turn")
    for message in messages:
        if not message["content"].strip():
            raise _Bad("empty_message", f"empty {message['role']} message")
    return messages


def _conversation(cid: Any, source: str, where: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    return {"id": str(cid), "source": source, "where": where, "messages": check_messages(messages)}


# ---- one converter per record format: record -> conversations (raises _Bad) ---------------------
def _turns(raw: list, label: str, role_key: str, text_key: str, noun: str,
           role_of: Callable[[str], str | None]) -> list[dict[str, str]]:
    """``{"role", "content"}`` messages from a record's list of turns (raises :class:`_Bad` naming the turn)."""
    messages = []
    for position, turn in enumerate(raw):
        where = f"{label} {position}"
        speaker = _require(turn, role_key, str, where)
        text = _require(turn, text_key, str, where)
        role = role_of(speaker)
        if role is None:
            raise _Bad("unknown_role", f"{where}: unknown {noun} {_shown(speaker)}")
        messages.append({"role": role, "content": text})
    return messages


def _from_sharegpt(record: Any, path: Path, line: int) -> list[dict[str, Any]]:
    messages = _turns(_require(record, "conversations", list), "turn", "from", "value", "speaker",
                      lambda speaker: ROLE_ALIASES.get(speaker.lower()))
    cid = record.get("id", f"{path.stem}-{line}")
    return [_conversation(cid, f"sharegpt:{path.name}", f"{path}:{line}", messages)]


def _from_alpaca(record: Any, path: Path, line: int) -> list[dict[str, Any]]:
    instruction = _require(record, "instruction", str)
    output = _require(record, "output", str)
    extra = record.get("input", "")
    if not isinstance(extra, str):
        raise _Bad("wrong_type", f"'input' must be str, got {type(extra).__name__}")
    prompt = instruction.strip() + (f"\n\n{extra.strip()}" if extra.strip() else "")
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return [_conversation(f"{path.stem}-{line}", f"alpaca:{path.name}", f"{path}:{line}", messages)]


def _from_hc3(record: Any, path: Path, line: int) -> list[dict[str, Any]]:
    question = _require(record, "question", str)
    answers = _require(record, "chatgpt_answers", list)
    if not answers:
        raise _Bad("no_answer", "'chatgpt_answers' is empty")
    out = []
    for position, answer in enumerate(answers):
        if not isinstance(answer, str):
            raise _Bad("wrong_type", f"chatgpt_answers[{position}] must be str, got {type(answer).__name__}")
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        cid = f"{record.get('id', f'{path.stem}-{line}')}-{position}"
        out.append(_conversation(cid, f"hc3:{path.name}", f"{path}:{line}", messages))
    return out


def _from_messages(record: Any, path: Path, line: int) -> list[dict[str, Any]]:
    messages = _turns(_require(record, "messages", list), "message", "role", "content", "role",
                      lambda role: role if role in ("system", "user", "assistant") else None)
    cid = record.get("id", f"{path.stem}-{line}")
    return [_conversation(cid, f"messages:{path.name}", f"{path}:{line}", messages)]


RECORD_FORMATS: dict[str, Callable[[Any, Path, int], list[dict[str, Any]]]] = {
    "sharegpt": _from_sharegpt, "alpaca": _from_alpaca, "hc3": _from_hc3, "messages": _from_messages,
}
FORMATS = ("sharegpt", "alpaca", "hc3", "messages", "discord")


def _discord_message(record: Any) -> dict[str, Any]:
    """The fields of one Discord message that threads are built from (raises :class:`_Bad`)."""
    mid = _require(record, "id", str)
    content = _require(record, "content", str)
    author = _require(record, "author", dict)
    is_bot = _require(author, "isBot", bool, "author")
    reference = record.get("reference")
    if reference is not None and not isinstance(reference, dict):
        raise _Bad("wrong_type", f"'reference' must be an object, got {type(reference).__name__}")
    parent = (reference or {}).get("messageId")
    if parent is not None and not isinstance(parent, str):
        raise _Bad("wrong_type", f"'reference.messageId' must be str, got {type(parent).__name__}")
    return {"id": mid, "content": content, "bot": is_bot, "parent": parent}


def _read_discord(path: Path, strict: bool, result: ImportResult) -> None:
    """Threads of bot answers to user messages, one conversation per thread (its last bot answer)."""
    messages: dict[str, dict[str, Any]] = {}

    def bad(line: int, exc: _Bad) -> None:
        problem = Problem(str(path), line, exc.reason, exc.message)
        if strict:
            raise ImportFormatError(str(problem))
        result.problems.append(problem)

    for line, record in _json_lines(path, "discord"):
        result.records += 1
        try:
            if isinstance(record, _Bad):
                raise record
            message = _discord_message(record)
            if message["id"] in messages:
                raise _Bad("duplicate_id", f"message id {_shown(message['id'])} already on line "
                                           f"{messages[message['id']]['line']}")
        except _Bad as exc:
            bad(line, exc)
            continue
        messages[message["id"]] = {**message, "line": line}
    answered = {m["parent"] for m in messages.values() if m["bot"]}  # user messages a bot replied to
    continued = {m["parent"] for m in messages.values()
                 if not m["bot"] and m["id"] in answered and m["parent"] in messages and messages[m["parent"]]["bot"]}
    for message in sorted(messages.values(), key=lambda m: m["line"]):
        if not message["bot"] or message["id"] in continued:
            continue  # user chatter, or a bot answer that a later turn of the same thread continues
        try:
            chain, seen, node = [], set(), message
            while node is not None and node["id"] not in seen:
                seen.add(node["id"])
                chain.append(node)
                if node["parent"] is None:
                    break
                if node["parent"] not in messages:
                    if node["bot"]:
                        raise _Bad("reply_to_missing", f"bot message {_shown(node['id'])} replies to message "
                                                       f"{_shown(node['parent'])}, which is not in the file")
                    break  # the thread starts at a user message replying to something older
                parent = messages[node["parent"]]
                if parent["bot"] == node["bot"]:
                    if node["bot"]:
                        raise _Bad("turn_order", f"bot message {_shown(node['id'])} replies to another bot message")
                    break  # a user replying to another user: the thread starts here
                node = parent
            if chain[-1]["bot"]:
                raise _Bad("no_prompt", f"bot message {_shown(chain[-1]['id'])} does not reply to a user message")
            turns = [{"role": "assistant" if m["bot"] else "user", "content": m["content"]} for m in reversed(chain)]
            result.conversations.append(
                _conversation(f"discord-{message['id']}", f"discord:{path.name}", f"{path}:{message['line']}", turns))
        except _Bad as exc:
            bad(message["line"], exc)
    result.problems.sort(key=lambda problem: problem.line)


def read_import_file(path: str | Path, format: str, strict: bool = False) -> ImportResult:
    """Read every record of one file; bad records are skipped and listed in ``problems``.

    Raises:
        ImportFormatError: the file cannot be read as ``format``, it yields no conversation, or
            (``strict``) at its first bad record, naming file and line.
    """
    if format not in FORMATS:
        raise ImportFormatError(f"{path}: unknown format {format!r}; known: {', '.join(FORMATS)}")
    path = Path(path)
    if not path.exists():
        raise ImportFormatError(f"{path}: file not found")
    if not path.is_file():
        raise ImportFormatError(f"{path}: not a file")
    result = ImportResult(path=path, format=format)
    if format == "discord":
        _read_discord(path, strict, result)
    else:
        records = _json_array(path) if format in JSON_ARRAY_FORMATS else _json_lines(path, format)
        convert = RECORD_FORMATS[format]
        for line, record in records:
            result.records += 1
            try:
                if isinstance(record, _Bad):
                    raise record
                result.conversations.extend(convert(record, path, line))
            except _Bad as exc:
                problem = Problem(str(path), line, exc.reason, exc.message)
                if strict:
                    raise ImportFormatError(str(problem)) from None
                result.problems.append(problem)
    if not result.conversations:
        skipped = f" ({len(result.problems)} bad records skipped, the first: {result.problems[0]})" \
            if result.problems else ""
        raise ImportFormatError(f"{path}: no conversations found{skipped}")
    return result


def import_conversations(path: str | Path, format: str, strict: bool = True) -> list[dict[str, Any]]:
    """The conversations of one file (``sharegpt`` | ``alpaca`` | ``hc3`` | ``messages`` | ``discord``).

    Strict by default: the first bad record raises :class:`ImportFormatError` naming file and line.
    With ``strict=False`` bad records are skipped (see :func:`read_import_file` for the list).
    """
    return read_import_file(path, format, strict=strict).conversations


def import_sharegpt(path: str | Path) -> list[dict[str, Any]]:
    """ShareGPT JSON: ``[{"id", "conversations": [{"from": "human"|"gpt"|"system", "value"}]}]``."""
    return import_conversations(path, "sharegpt")


def import_alpaca(path: str | Path) -> list[dict[str, Any]]:
    """Alpaca JSON: ``[{"instruction", "input", "output"}]`` (``input`` optional)."""
    return import_conversations(path, "alpaca")


def import_hc3(path: str | Path) -> list[dict[str, Any]]:
    """HC3 JSONL: ``{"question", "human_answers", "chatgpt_answers"}``; one conversation per ChatGPT answer."""
    return import_conversations(path, "hc3")


def import_messages(path: str | Path) -> list[dict[str, Any]]:
    """Generic JSONL: ``{"messages": [{"role", "content"}], "id"?}`` per line."""
    return import_conversations(path, "messages")


def import_discord(path: str | Path) -> list[dict[str, Any]]:
    """Discord messages JSONL (DiscordChatExporter fields); one conversation per bot-answer thread."""
    return import_conversations(path, "discord")


IMPORTERS: dict[str, Callable[[str | Path], list[dict[str, Any]]]] = {
    "sharegpt": import_sharegpt, "alpaca": import_alpaca, "hc3": import_hc3, "messages": import_messages,
    "discord": import_discord,
}


@dataclass
class FileCheck:
    """``imitlib check``'s verdict on one import file: every record read."""

    key: str  # the params key naming the file, e.g. imitation.import_files.0
    path: Path
    format: str
    records: int = 0
    conversations: int = 0
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None  # the file cannot be used at all


def check_import_files(files: list[tuple[str, Path, str]]) -> list[FileCheck]:
    """Read every record of each (params key, path, format) and list what is wrong, file and line."""
    checks = []
    for key, path, format in files:
        check = FileCheck(key, Path(path), format)
        try:
            result = read_import_file(path, format, strict=False)
        except ImportFormatError as exc:
            check.error = str(exc)
        else:
            check.records, check.conversations, check.problems = (result.records, len(result.conversations),
                                                                  result.problems)
        checks.append(check)
    return checks


def check_report(checks: list[FileCheck], strict: bool) -> tuple[str, bool]:
    """The text ``imitlib check`` prints about the import files, and whether the 02 stage can read them
    (a file error always fails; a bad record fails only with ``imitation.cleaning.strict``)."""
    lines, ok = [], True
    for check in checks:
        head = f"{check.key}: {check.path} ({check.format})"
        if check.error:
            ok = False
            lines.append(f"error: {head}: {check.error}")
            continue
        verdict = "ok"
        if check.problems:
            ok = ok and not strict
            verdict = (f"{len(check.problems)} bad records: the build stops at the first (imitation.cleaning.strict)"
                       if strict else f"{len(check.problems)} bad records, skipped when building")
        lines.append(f"{'error' if check.problems and strict else 'checked'}: {head}: {check.records} records, "
                     f"{check.conversations} conversations; {verdict}")
        lines += [f"  {problem} [{problem.reason}]" for problem in check.problems]
    return "\n".join(lines), ok


def check_config_imports(cfg: Any) -> tuple[str, bool]:
    """:func:`check_report` for the import files a config names (none unless ``broad_source: files``)."""
    if cfg.imitation.broad_source != "files":
        return "", True
    files = [(f"imitation.import_files.{i}", input_path(item.path), item.format)
             for i, item in enumerate(cfg.imitation.import_files)]
    return check_report(check_import_files(files), cfg.imitation.cleaning.strict)


def conversations_dataset(conversations: list[dict[str, Any]]):
    """A ``datasets.Dataset`` with columns id, source, messages."""
    from datasets import Dataset

    return Dataset.from_list([{"id": c["id"], "source": c["source"], "messages": c["messages"]}
                              for c in conversations])
