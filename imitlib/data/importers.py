"""Importers for the conversation files users already have, into one conversation format.

Formats: ShareGPT JSON (a list of ``{"id", "conversations": [{"from", "value"}]}``), Alpaca JSON
(a list of ``{"instruction", "input", "output"}``), HC3 JSONL (``{"question", "chatgpt_answers"}``
per line; one conversation per ChatGPT answer) and a generic ``messages`` JSONL
(``{"messages": [{"role", "content"}]}`` per line). Every conversation becomes
``{"id", "source", "messages"}`` with roles ``system`` / ``user`` / ``assistant``, starting (after
an optional system message) with a user turn and ending with an assistant turn. Any problem raises
:class:`ImportFormatError` naming the file and line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

ROLE_ALIASES = {
    "human": "user", "user": "user", "prompter": "user",
    "gpt": "assistant", "chatgpt": "assistant", "assistant": "assistant", "bing": "assistant", "bard": "assistant",
    "model": "assistant", "system": "system",
}


class ImportFormatError(ValueError):
    """A conversation file does not match its format; the message names the file and line."""


def _shown(value: str, limit: int = 60) -> str:
    """``repr`` of a value from the file, cut short so a huge field cannot flood the error message."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, element) for each element of a top-level JSON array, parsed element by element."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ImportFormatError(f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    decoder = json.JSONDecoder()
    position = len(text) - len(text.lstrip())
    if position >= len(text) or text[position] != "[":
        raise ImportFormatError(f"{path}:{_line_of(text, position)}: expected a JSON array of records")
    position += 1
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position < len(text) and text[position] == "]":
            rest = text[position + 1:].strip()
            if rest:
                raise ImportFormatError(f"{path}:{_line_of(text, position + 1)}: unexpected data after the array")
            return
        try:
            element, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(f"{path}:{_line_of(text, position)}: invalid JSON in the record starting on this "
                                    f"line ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
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


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, record) for each non-empty line of a JSONL file."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ImportFormatError(f"{path}:{number}: not UTF-8 text ({exc.reason})") from None
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ImportFormatError(f"{path}:{number}: invalid JSON ({exc.msg}, column {exc.colno})") from None


def _require(record: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(record, dict):
        raise ImportFormatError(f"{where}: expected an object, got {type(record).__name__}")
    if key not in record:
        raise ImportFormatError(f"{where}: missing key {key!r}")
    value = record[key]
    if not isinstance(value, kind):
        raise ImportFormatError(f"{where}: {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _check_messages(messages: list[dict[str, str]], where: str) -> list[dict[str, str]]:
    turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if not turns:
        raise ImportFormatError(f"{where}: conversation has no turns")
    if turns[0]["role"] != "user":
        raise ImportFormatError(f"{where}: conversation must start with a user turn, got {turns[0]['role']!r}")
    for previous, current in zip(turns, turns[1:]):
        if current["role"] == previous["role"] or current["role"] == "system":
            raise ImportFormatError(f"{where}: turns must alternate user/assistant, found {previous['role']!r} "
                                    f"then {current['role']!r}")
    if turns[-1]["role"] != "assistant":
        raise ImportFormatError(f"{where}: conversation must end with an assistant turn")
    for message in messages:
        if not message["content"].strip():
            raise ImportFormatError(f"{where}: empty {message['role']} message")
    return messages


def import_sharegpt(path: str | Path) -> list[dict[str, Any]]:
    """ShareGPT JSON: ``[{"id", "conversations": [{"from": "human"|"gpt"|"system", "value"}]}]``."""
    path = Path(path)
    out = []
    for line, record in _json_array(path):
        where = f"{path}:{line}"
        turns = _require(record, "conversations", list, where)
        messages = []
        for position, turn in enumerate(turns):
            speaker = _require(turn, "from", str, f"{where}: turn {position}")
            value = _require(turn, "value", str, f"{where}: turn {position}")
            role = ROLE_ALIASES.get(speaker.lower())
            if role is None:
                raise ImportFormatError(f"{where}: turn {position}: unknown speaker {_shown(speaker)}")
            messages.append({"role": role, "content": value})
        cid = str(record.get("id", f"{path.stem}-{line}"))
        out.append({"id": cid, "source": f"sharegpt:{path.name}", "messages": _check_messages(messages, where)})
    return out


def import_alpaca(path: str | Path) -> list[dict[str, Any]]:
    """Alpaca JSON: ``[{"instruction", "input", "output"}]`` (``input`` optional)."""
    path = Path(path)
    out = []
    for line, record in _json_array(path):
        where = f"{path}:{line}"
        instruction = _require(record, "instruction", str, where)
        output = _require(record, "output", str, where)
        extra = record.get("input", "")
        if not isinstance(extra, str):
            raise ImportFormatError(f"{where}: 'input' must be str, got {type(extra).__name__}")
        prompt = instruction.strip() + (f"\n\n{extra.strip()}" if extra.strip() else "")
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
        out.append({"id": f"{path.stem}-{line}", "source": f"alpaca:{path.name}",
                    "messages": _check_messages(messages, where)})
    return out


def import_hc3(path: str | Path) -> list[dict[str, Any]]:
    """HC3 JSONL: ``{"question", "human_answers", "chatgpt_answers"}``; one conversation per ChatGPT answer."""
    path = Path(path)
    out = []
    for line, record in _json_lines(path):
        where = f"{path}:{line}"
        question = _require(record, "question", str, where)
        answers = _require(record, "chatgpt_answers", list, where)
        for position, answer in enumerate(answers):
            if not isinstance(answer, str):
                raise ImportFormatError(f"{where}: chatgpt_answers[{position}] must be str")
            messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            cid = f"{record.get('id', f'{path.stem}-{line}')}-{position}"
            out.append({"id": str(cid), "source": f"hc3:{path.name}", "messages": _check_messages(messages, where)})
    return out


def import_messages(path: str | Path) -> list[dict[str, Any]]:
    """Generic JSONL: ``{"messages": [{"role", "content"}], "id"?}`` per line."""
    path = Path(path)
    out = []
    for line, record in _json_lines(path):
        where = f"{path}:{line}"
        raw = _require(record, "messages", list, where)
        messages = []
        for position, message in enumerate(raw):
            role = _require(message, "role", str, f"{where}: message {position}")
            content = _require(message, "content", str, f"{where}: message {position}")
            if role not in ("system", "user", "assistant"):
                raise ImportFormatError(f"{where}: message {position}: unknown role {_shown(role)}")
            messages.append({"role": role, "content": content})
        cid = str(record.get("id", f"{path.stem}-{line}"))
        out.append({"id": cid, "source": f"messages:{path.name}", "messages": _check_messages(messages, where)})
    return out


IMPORTERS: dict[str, Callable[[str | Path], list[dict[str, Any]]]] = {
    "sharegpt": import_sharegpt, "alpaca": import_alpaca, "hc3": import_hc3, "messages": import_messages,
}


def import_conversations(path: str | Path, format: str) -> list[dict[str, Any]]:
    """Read one file of the given format (``sharegpt`` | ``alpaca`` | ``hc3`` | ``messages``)."""
    if format not in IMPORTERS:
        raise ImportFormatError(f"{path}: unknown format {format!r}; known: {', '.join(IMPORTERS)}")
    path = Path(path)
    if not path.exists():
        raise ImportFormatError(f"{path}: file not found")
    conversations = IMPORTERS[format](path)
    if not conversations:
        raise ImportFormatError(f"{path}: no conversations found")
    return conversations


def conversations_dataset(conversations: list[dict[str, Any]]):
    """A ``datasets.Dataset`` with columns id, source, messages."""
    from datasets import Dataset

    return Dataset.from_list([{"id": c["id"], "source": c["source"], "messages": c["messages"]}
                              for c in conversations])
