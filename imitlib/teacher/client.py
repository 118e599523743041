"""The OpenAI-compatible backend: the official ``openai`` client with bounded concurrency and retries.

Works against ChatGPT, a vLLM or Ollama server, or the project's own server. Retries with
exponential backoff (and jitter, honouring ``Retry-After``) on rate limits, server errors,
timeouts, dropped connections and bodies that are not a well-formed chat completion; other 4xx
errors fail at once with the server's message.
"""

from __future__ import annotations

import ipaddress
import os
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

from imitlib.teacher.cache import Sampling, prompt_seed


class TeacherError(RuntimeError):
    """The teacher could not answer (after retries, or with a non-retryable error)."""


class GarbledResponse(ValueError):
    """The endpoint answered 2xx with something that is not a usable chat completion."""


def _is_loopback(base_url: str) -> bool:
    host = urlparse(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_api_key(api_key_env: str, base_url: str) -> str:
    """Read the API key from the environment variable NAMED by params.

    A loopback endpoint (the project's own server) needs no key; any other endpoint without the
    variable set is an error naming the variable.
    """
    key = os.environ.get(api_key_env)
    if key:
        return key
    if _is_loopback(base_url):
        return "no-key-needed-on-loopback"
    raise TeacherError(
        f"environment variable {api_key_env} (imitation.teacher.api_key_env) is not set; "
        f"export the API key for {base_url} there"
    )


def _content_of(response: Any) -> str:
    choices = getattr(response, "choices", None)
    if not choices:
        raise GarbledResponse(f"no choices in response: {str(response)[:200]!r}")
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None)
    if not isinstance(content, str):
        raise GarbledResponse(f"choice has no text content: {str(response)[:200]!r}")
    return content


class OpenAITeacher:
    """A chat-completions endpoint reached through the official ``openai`` client."""

    def __init__(self, base_url: str, model: str, api_key: str, max_concurrency: int = 4,
                 max_retries: int = 5, backoff_s: float = 0.5, timeout_s: float = 120.0) -> None:
        import openai

        self.base_url = base_url
        self.model_id = model
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        # retries are ours (they also cover garbled bodies), so the client's own are off
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout_s)
        self._openai = openai
        self.requests_sent = 0
        self._count_lock = threading.Lock()

    def _retry_delay(self, attempt: int, exc: BaseException) -> float:
        response = getattr(exc, "response", None)
        retry_after = None
        if response is not None:
            try:
                retry_after = float(response.headers.get("retry-after", ""))
            except (TypeError, ValueError):
                retry_after = None
        delay = self.backoff_s * (2 ** attempt) * (1.0 + 0.25 * random.random())
        if retry_after is not None:
            delay = max(delay, min(retry_after, 60.0))
        return delay

    def request(self, messages: list[dict[str, str]], sampling: Sampling) -> str:
        """One chat completion with retries; returns the answer text."""
        openai = self._openai
        kwargs: dict[str, Any] = dict(
            model=self.model_id, messages=messages, max_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature, n=1,
        )
        if not sampling.greedy:
            kwargs.update(top_p=sampling.top_p, seed=prompt_seed(messages, sampling.seed))
        retryable = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                     openai.APIConnectionError, openai.APIResponseValidationError, GarbledResponse, ValueError)
        last: BaseException | None = None
        for attempt in range(self.max_retries + 1):
            with self._count_lock:
                self.requests_sent += 1
            try:
                return _content_of(self.client.chat.completions.create(**kwargs))
            except openai.APIStatusError as exc:
                if exc.status_code < 500 and exc.status_code not in (408, 409, 429):
                    raise TeacherError(
                        f"{self.base_url} refused the request ({exc.status_code}): {exc.message}") from None
                last = exc
            except retryable as exc:
                last = exc
            if attempt < self.max_retries:
                time.sleep(self._retry_delay(attempt, last))
        raise TeacherError(
            f"{self.base_url}: no usable answer after {self.max_retries + 1} attempts; last error: "
            f"{type(last).__name__}: {last}")

    def answer(
        self,
        conversations: Sequence[list[dict[str, str]]],
        sampling: Sampling,
        on_answer: Callable[[int, str], None] | None = None,
        progress: bool = False,
    ) -> list[str]:
        """Answer every conversation with at most ``max_concurrency`` requests in flight.

        Requests go out shortest prompt first (characters), so the requests a batching server
        receives together have similar lengths, as the in-process backend's length-sorted batches
        do; answers come back in the input order. ``on_answer(index, text)`` runs in the calling
        thread as each answer arrives; if it (or a request) raises, requests not yet sent are
        cancelled and the error propagates.
        """
        from tqdm.auto import tqdm

        answers: list[str] = [""] * len(conversations)
        bar = tqdm(total=len(conversations), desc=f"teacher ({self.model_id})", disable=not progress, leave=False)
        executor = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="teacher")
        pending: dict[Future, int] = {}
        order = sorted(range(len(conversations)),
                       key=lambda i: sum(len(str(m.get("content", ""))) for m in conversations[i]))
        sent = 0
        try:
            # keep at most max_concurrency requests queued, so a stop cancels everything not yet sent
            while sent < len(order) or pending:
                while sent < len(order) and len(pending) < self.max_concurrency:
                    index = order[sent]
                    future = executor.submit(self.request, list(conversations[index]), sampling)
                    pending[future] = index
                    sent += 1
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    try:
                        text = future.result()
                    except BaseException:
                        # keep the answers already on their way before giving up
                        for other in wait(list(pending)).done:
                            if other.exception() is None and on_answer is not None:
                                on_answer(pending[other], other.result())
                        pending.clear()
                        raise
                    answers[index] = text
                    if on_answer is not None:
                        on_answer(index, text)
                    bar.update(1)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            bar.close()
        return answers
