"""On-disk response cache: one JSON line per answer, appended and fsynced as each answer arrives.

The key is the sha256 of (model, messages, sampling parameters), so an interrupted collection
resumes where it stopped and never sends an answered prompt again. A last line cut short by a
crash is ignored; a broken line anywhere else is an error naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CACHE_FILE = "responses.jsonl"


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of one collection (part of every cache key).

    Attributes:
        max_new_tokens: longest answer, in teacher tokens.
        temperature: 0 for greedy decoding.
        top_p: nucleus mass when sampling.
        seed: base seed; each prompt gets its own seed derived from it (sampled answers only).
    """

    max_new_tokens: int = 96
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def as_key(self) -> dict[str, Any]:
        """The parameters that change an answer (the seed only matters when sampling)."""
        out = asdict(self)
        if self.greedy:
            out.pop("seed")
            out.pop("top_p")
        return out


def response_key(model: str, messages: list[dict[str, str]], sampling: Sampling) -> str:
    """sha256 hex digest of (model, messages, sampling parameters)."""
    payload = json.dumps(
        {"model": model, "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
         "sampling": sampling.as_key()},
        sort_keys=True, ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def prompt_seed(messages: list[dict[str, str]], base_seed: int) -> int:
    """A per-prompt sampling seed, independent of the order prompts are sent in."""
    payload = json.dumps({"messages": messages, "seed": base_seed}, sort_keys=True, ensure_ascii=False)
    return int(hashlib.sha256(payload.encode("utf-8")).hexdigest()[:8], 16) & 0x7FFFFFFF


class ResponseCache:
    """Append-only JSONL store of teacher answers keyed by :func:`response_key`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / CACHE_FILE
        self._lock = threading.Lock()
        self._answers: dict[str, str] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        complete = raw.endswith(b"\n")
        valid_bytes = 0
        for number, line in enumerate(lines, 1):
            is_last = number == len(lines) or (number == len(lines) - 1 and lines[-1] == b"")
            if not line.strip():
                valid_bytes += len(line) + 1
                continue
            try:
                record = json.loads(line)
                key, answer = record["key"], record["answer"]
                if not isinstance(answer, str):
                    raise TypeError("answer is not a string")
            except (ValueError, KeyError, TypeError) as exc:
                if is_last and not complete:
                    break  # a write cut short by a crash: drop it, it will be asked again
                raise ValueError(f"{self.path}:{number}: broken cache line ({exc})") from None
            self._answers[key] = answer
            valid_bytes += len(line) + 1
        if not complete and valid_bytes < len(raw):
            with open(self.path, "r+b") as handle:  # cut the torn tail so appends stay line-aligned
                handle.truncate(valid_bytes)

    def __contains__(self, key: str) -> bool:
        return key in self._answers

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: str) -> str | None:
        return self._answers.get(key)

    def put(self, key: str, answer: str, model: str, messages: list[dict[str, str]], sampling: Sampling) -> None:
        """Append one answer and fsync before returning (thread-safe)."""
        record = {"key": key, "model": model, "messages": messages, "sampling": sampling.as_key(), "answer": answer}
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            with open(self.path, "ab") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            self._answers[key] = answer
