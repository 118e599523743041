"""The teacher behind an API: one way to collect answers, whatever the backend.

Backends (``imitation.teacher.backend``):

- ``served``: the project's own OpenAI-compatible server started on the teacher's folder in a
  subprocess (:func:`imitlib.teacher.server.served_teacher`), reached with the ``openai`` client:
  the students' data comes through the same interface as the paper's ChatGPT answers;
- ``openai``: any OpenAI-compatible endpoint (``base_url``, ``model``; key from ``api_key_env``);
- ``local``: the model loaded in this process (batched generation, KV cache).

Usage::

    with open_teacher(settings.teacher, model_dir=world.teacher_dir) as teacher:
        answers = collect(conversations, teacher, cache_dir)

Every answer is written to the on-disk cache as it arrives, so a rerun after an interruption only
sends the prompts still unanswered.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

from imitlib.settings.imitation import TeacherSettings
from imitlib.teacher.cache import ResponseCache, Sampling, response_key
from imitlib.teacher.client import OpenAITeacher, TeacherError, resolve_api_key

__all__ = ["Sampling", "ResponseCache", "TeacherError", "TeacherBackend", "open_teacher", "collect",
           "sampling_from"]


class TeacherBackend(Protocol):
    """What :func:`collect` needs from a backend."""

    model_id: str

    def answer(self, conversations: Sequence[list[dict[str, str]]], sampling: Sampling,
               on_answer: Callable[[int, str], None] | None = None, progress: bool = False) -> list[str]: ...


def sampling_from(settings: TeacherSettings, temperature: float | None = None, seed: int = 0,
                  max_new_tokens: int | None = None) -> Sampling:
    """Sampling parameters from params, optionally with another temperature / seed / length."""
    return Sampling(
        max_new_tokens=max_new_tokens or settings.max_new_tokens,
        temperature=settings.temperature if temperature is None else temperature,
        top_p=settings.top_p,
        seed=seed,
    )


@contextlib.contextmanager
def open_teacher(settings: TeacherSettings, model_dir: str | Path | None = None,
                 device: str = "auto") -> Iterator[TeacherBackend]:
    """Open the backend named by ``settings.backend`` (and close it, stopping a served model, on exit).

    Args:
        settings: the ``imitation.teacher`` params.
        model_dir: the teacher's model folder (``served`` and ``local`` backends).
        device: device of the ``local`` backend.
    """
    if settings.backend == "openai":
        assert settings.base_url and settings.model  # checked by the schema
        api_key = resolve_api_key(settings.api_key_env, settings.base_url)
        yield OpenAITeacher(settings.base_url, settings.model, api_key, settings.max_concurrency,
                            settings.max_retries, settings.backoff_s, settings.timeout_s)
        return
    if model_dir is None:
        raise ValueError(f"teacher backend {settings.backend!r} needs the teacher's model folder")
    if settings.backend == "local":
        from imitlib.teacher.local import LocalTeacher

        yield LocalTeacher(model_dir, device=device, batch_size=settings.batch_size, dtype=settings.dtype)
        return
    from imitlib.teacher.server import served_teacher

    with served_teacher(model_dir, max_batch=settings.server_max_batch, dtype=settings.dtype) as endpoint:
        # enough requests in flight to fill the server's batches
        concurrency = max(settings.max_concurrency, settings.server_max_batch)
        yield OpenAITeacher(endpoint.base_url, endpoint.model, resolve_api_key(settings.api_key_env, endpoint.base_url),
                            concurrency, settings.max_retries, settings.backoff_s, settings.timeout_s)


def collect(
    conversations: Sequence[list[dict[str, str]]],
    teacher: TeacherBackend,
    cache_dir: str | Path,
    sampling: Sampling,
    cache_model: str | None = None,
    on_answer: Callable[[int, str], None] | None = None,
    progress: bool = False,
) -> list[str]:
    """The teacher's answer to each conversation, in order, through the response cache.

    Only conversations whose key is not yet cached are sent; each answer is stored (fsynced) as
    it arrives, before ``on_answer(index, text)`` is called.

    Args:
        conversations: lists of ``{"role", "content"}`` messages, each ending with a user turn.
        teacher: a backend from :func:`open_teacher`.
        cache_dir: folder of the response cache (``responses.jsonl``).
        sampling: sampling parameters (part of the cache key).
        cache_model: model name in the cache key; defaults to ``teacher.model_id``. Pass the same
            name to share answers between backends serving the same weights.
        on_answer: called with (index, text) for each newly received answer.
        progress: show a progress bar.
    """
    for index, messages in enumerate(conversations):
        if not messages or messages[-1].get("role") != "user":
            raise ValueError(f"conversation {index} must end with a user message, got {messages[-1:]!r}")
    model = cache_model or teacher.model_id
    cache = ResponseCache(cache_dir)
    keys = [response_key(model, list(m), sampling) for m in conversations]
    missing: list[int] = []
    seen: set[str] = set()
    for index, key in enumerate(keys):
        if key not in cache and key not in seen:
            missing.append(index)
            seen.add(key)
    if missing:
        def store(position: int, text: str) -> None:
            index = missing[position]
            cache.put(keys[index], text, model, list(conversations[index]), sampling)
            if on_answer is not None:
                on_answer(index, text)

        teacher.answer([list(conversations[i]) for i in missing], sampling, on_answer=store, progress=progress)
    return [cache.get(key) for key in keys]  # type: ignore[misc]
