"""The project's own OpenAI-compatible server for any local HF model.

``python -m imitlib serve MODEL_DIR --port P`` answers ``POST /v1/chat/completions`` and
``GET /v1/models``, bound to 127.0.0.1 unless told otherwise. Concurrent greedy requests are
answered together in batches (KV cache, length-sorted); a sampled request is answered on its own
with its ``seed``, so its text does not depend on what else arrived at the same time. Malformed or
oversized requests get a 4xx with an OpenAI-style JSON error body.

``stream: true`` is answered with server-sent events in the ``chat.completion.chunk`` format: a
first chunk with the assistant role, content deltas as tokens are generated, a last chunk with the
``finish_reason``, a usage chunk when ``stream_options.include_usage`` is set, then ``data: [DONE]``.
A streamed request is generated on its own (batch of one), and its deltas add up to the text the
same request gets unstreamed when that one is answered alone.

:func:`served_teacher` starts the server in a subprocess on a free port and stops it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from fastapi import Request  # at module level: the endpoint's string annotation resolves against these globals
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from imitlib.processes import die_with_parent, stop_process
from imitlib.teacher.cache import Sampling
from imitlib.teacher.local import LocalTeacher

MAX_REQUEST_BYTES = 1_000_000
MAX_MESSAGES = 256
MAX_NEW_TOKENS_LIMIT = 4096


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=200_000)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: StrictBool = False


class ChatRequest(BaseModel):
    """The subset of the chat-completions request the server honours (other fields are ignored)."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS_LIMIT)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS_LIMIT)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if messages[-1].role != "user":
            raise ValueError("the last message must have role 'user'")
        return messages

    @property
    def new_tokens(self) -> int:
        return self.max_completion_tokens or self.max_tokens or 256

    @property
    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class _StopGeneration(Exception):
    """Raised inside ``generate`` by a :class:`_TextDeltas` to end generation early: a stop string
    was generated, or the streaming client went away."""


class _TextDeltas:
    """A ``transformers`` streamer that turns the tokens of one answer into text deltas.

    The answer the server returns unstreamed is the new tokens decoded without special tokens,
    stripped, and cut at the first stop string. A delta is sent only once it cannot change that
    text any more: leading whitespace, trailing whitespace, a trailing undecodable byte sequence and
    a trailing prefix of a stop string are held back until later tokens settle them. Generation
    ends early once a stop string appears, and when :meth:`cancel` is called.
    """

    def __init__(self, tokenizer: Any, stops: list[str], emit: Callable[[str], None]) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.emit = emit
        self.ids: list[int] = []
        self.sent = ""
        self.text = ""  # the stripped decoded answer so far
        self.stopped = False
        self._prompt_seen = False
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def put(self, value: Any) -> None:
        if self._cancelled.is_set():
            raise _StopGeneration("client closed the stream")
        if not self._prompt_seen:  # generate() first pushes the prompt
            self._prompt_seen = True
            return
        self.ids.extend(int(i) for i in value.reshape(-1).tolist())
        self.text = self.tokenizer.decode(self.ids, skip_special_tokens=True).strip()
        cut = min((self.text.index(s) for s in self.stops if s in self.text), default=None)
        if cut is not None:
            self.stopped = True
            raise _StopGeneration("stop string generated")
        settled = self.text.rstrip().rstrip("\ufffd")
        for stop in self.stops:  # a tail that may grow into a stop string waits
            for size in range(min(len(stop) - 1, len(settled)), 0, -1):
                if settled.endswith(stop[:size]):
                    settled = settled[:-size]
                    break
        if len(settled) > len(self.sent) and settled.startswith(self.sent):
            delta, self.sent = settled[len(self.sent):], settled
            self.emit(delta)

    def end(self) -> None:
        pass


@dataclass
class _Job:
    messages: list[dict[str, str]]
    sampling: Sampling
    future: Future = field(default_factory=Future)
    streamer: _TextDeltas | None = None


class BatchingEngine:
    """A worker thread that answers queued requests, batching the greedy ones together."""

    def __init__(self, teacher: LocalTeacher, max_batch: int = 16, gather_s: float = 0.05,
                 max_gather_s: float = 0.5) -> None:
        self.teacher = teacher
        self.teacher.batch_size = max_batch
        self.max_batch = max_batch
        self.gather_s = gather_s
        self.max_gather_s = max_gather_s
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.answered = 0
        self.batches = 0
        self.busy_s = 0.0  # seconds spent generating (the rest of the wall time is waiting or gathering)
        self._thread = threading.Thread(target=self._run, name="teacher-engine", daemon=True)
        self._thread.start()

    def submit(self, messages: list[dict[str, str]], sampling: Sampling, streamer: _TextDeltas | None = None) -> Future:
        job = _Job(messages, sampling, streamer=streamer)
        self.jobs.put(job)
        return job.future

    def close(self) -> None:
        self.jobs.put(None)
        self._thread.join(timeout=30)

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """Collect up to ``max_batch`` jobs: wait while they keep arriving less than ``gather_s`` apart.

        Clients that resend as soon as their answer arrives come back a few milliseconds apart,
        more on a busy machine; a window fixed from the first arrival cut such a wave in two and
        the straggler then cost a whole extra generation pass (benchmarks/bench_serving.py). The
        window therefore restarts at every arrival, capped at ``max_gather_s`` in total.
        """
        batch, stop = [first], False
        started = time.monotonic()
        deadline = started + self.gather_s
        while len(batch) < self.max_batch:
            try:
                job = self.jobs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            batch.append(job)
            deadline = min(time.monotonic() + self.gather_s, started + self.max_gather_s)
        return batch, stop

    def _answer(self, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        try:
            streamer = jobs[0].streamer if len(jobs) == 1 else None
            texts = self.teacher.answer([j.messages for j in jobs], jobs[0].sampling, streamer=streamer)
        except BaseException as exc:  # deliver the failure to every waiting request
            for job in jobs:
                job.future.set_exception(exc)
            return
        finally:
            self.busy_s += time.perf_counter() - started
        self.batches += 1
        for job, text in zip(jobs, texts):
            self.answered += 1
            job.future.set_result(text)

    def _run(self) -> None:
        while True:
            first = self.jobs.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            greedy: dict[int, list[_Job]] = {}
            for job in batch:
                if job.sampling.greedy and job.streamer is None:
                    greedy.setdefault(job.sampling.max_new_tokens, []).append(job)
                else:
                    self._answer([job])
            for jobs in greedy.values():
                self._answer(jobs)
            if stop:
                return


def _error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
           param: str | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status,
                        content={"error": {"message": message, "type": kind, "param": param, "code": code}})


class _BodyLimit:
    """ASGI middleware: a body that grows past ``limit`` bytes while being received (one sent without
    Content-Length, in chunks) ends the request with a 413 instead of being read whole."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    from starlette.exceptions import HTTPException

                    raise HTTPException(413, f"request body exceeds {self.limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


def create_app(teacher: LocalTeacher, model_name: str | None = None, max_batch: int = 16,
               max_request_bytes: int = MAX_REQUEST_BYTES):
    """A FastAPI app serving ``teacher``; ``app.state.engine`` counts answered requests."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    name = model_name or teacher.model_id
    watchers: set[asyncio.Future] = set()  # the disconnect watchers of streams in flight
    engine = BatchingEngine(teacher, max_batch=max_batch)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        engine.close()

    app = FastAPI(title="imitlib teacher", lifespan=lifespan)
    app.add_middleware(_BodyLimit, limit=max_request_bytes)
    app.state.engine = engine
    app.state.model_name = name
    app.state.requests = 0
    created = int(time.time())

    @app.middleware("http")
    async def limit_size(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > max_request_bytes
            except ValueError:
                return _error(400, f"invalid Content-Length header {length!r}")
            if too_big:
                return _error(413, f"request body of {length} bytes exceeds {max_request_bytes}",
                              code="request_too_large")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg')}")
        return _error(400, "invalid request: " + "; ".join(problems), param=None, code="invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 413: "request_too_large"}.get(exc.status_code)
        return _error(exc.status_code, str(exc.detail), code=code)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "imitlib"}]}

    @app.get("/health")
    async def health():
        return {"status": "ok", "answered": engine.answered, "batches": engine.batches,
                "busy_seconds": round(engine.busy_s, 3)}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        app.state.requests += 1
        if body.model != name:
            return _error(404, f"model {body.model!r} does not exist; this server has {name!r}",
                          code="model_not_found", param="model")
        messages = [{"role": m.role, "content": m.content} for m in body.messages]
        try:
            prompt = teacher.render(messages)
        except Exception as exc:  # a template that rejects this conversation
            return _error(400, f"cannot format messages: {exc}", param="messages")
        prompt_tokens = teacher.count_tokens(prompt)
        limit = teacher.context_length
        if limit is not None and prompt_tokens + body.new_tokens > limit:
            return _error(400, f"prompt ({prompt_tokens} tokens) + max_tokens ({body.new_tokens}) exceeds the "
                               f"model's context length {limit}", code="context_length_exceeded", param="messages")
        seed = body.seed if body.seed is not None else 0
        sampling = Sampling(max_new_tokens=body.new_tokens, temperature=body.temperature, top_p=body.top_p, seed=seed)
        if body.stream:
            return _stream(body, messages, sampling, prompt_tokens, request)
        try:
            text = await asyncio.wrap_future(engine.submit(messages, sampling))
        except Exception as exc:
            return _error(500, f"generation failed: {type(exc).__name__}: {exc}", kind="server_error")
        text, finish, usage = _finish(text, body, prompt_tokens)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                         "logprobs": None}],
            "usage": usage,
        }

    def _finish(text: str, body: ChatRequest, prompt_tokens: int) -> tuple[str, str, dict[str, int]]:
        """The answer cut at its first stop string, its finish reason and its token usage."""
        for stop in body.stops:
            if stop and stop in text:
                text = text[: text.index(stop)]
        completion_tokens = teacher.count_tokens(text)
        finish = "length" if completion_tokens >= body.new_tokens else "stop"
        return text, finish, {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens}

    def _stream(body: ChatRequest, messages: list[dict[str, str]], sampling: Sampling, prompt_tokens: int,
                request: Request):
        """Server-sent events in the ``chat.completion.chunk`` format, deltas as tokens are generated."""
        import json

        from fastapi.responses import StreamingResponse

        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue = asyncio.Queue()
        done = object()
        streamer = _TextDeltas(teacher.tokenizer, body.stops,
                               emit=lambda delta: loop.call_soon_threadsafe(deltas.put_nowait, delta))
        future = engine.submit(messages, sampling, streamer=streamer)
        # queued after every delta the worker emitted, so the end is seen last
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(deltas.put_nowait, done))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        completion_id, stamp = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def event(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> str:
            chunk: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": stamp,
                                     "model": name, "choices": choices}
            if include_usage:
                chunk["usage"] = usage
            return f"data: {json.dumps(chunk)}\n\n"

        def choice(delta: dict[str, str], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

        async def watch_client() -> None:
            """Stop the generation once the client has gone away. This does not rely on the event
            generator below: the ASGI server drops writes to a closed connection silently, and a
            streaming response cancelled on disconnect may leave that generator suspended, unfinalised."""
            while not future.done():
                if await request.is_disconnected():
                    streamer.cancel()
                    return
                await asyncio.sleep(0.05)

        watcher = asyncio.ensure_future(watch_client())
        watchers.add(watcher)  # a strong reference until it ends
        watcher.add_done_callback(watchers.discard)

        async def events():
            try:
                yield event(choice({"role": "assistant", "content": ""}))
                sent = ""
                while (delta := await deltas.get()) is not done:
                    sent += delta
                    yield event(choice({"content": delta}))
                try:
                    text = future.result()
                except _StopGeneration:
                    text = streamer.text
                except Exception as exc:
                    error = {"message": f"generation failed: {type(exc).__name__}: {exc}", "type": "server_error",
                             "param": None, "code": None}
                    yield f"data: {json.dumps({'error': error})}\n\n"
                    return
                text, finish, usage = _finish(text, body, prompt_tokens)
                if text.startswith(sent) and len(text) > len(sent):
                    yield event(choice({"content": text[len(sent):]}))
                yield event(choice({}, finish))
                if include_usage:
                    yield event([], usage)
                yield "data: [DONE]\n\n"
            finally:  # also when the client goes away mid-stream: generation stops at its next token
                streamer.cancel()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None,
          max_batch: int = 16, device: str = "auto", dtype: str = "float32") -> None:
    """Serve a model folder through the OpenAI-compatible API until interrupted."""
    import uvicorn

    try:
        public = not ipaddress.ip_address(host).is_loopback
    except ValueError:
        public = host != "localhost"
    if public:
        print(f"warning: serving on {host}, reachable beyond this machine", file=sys.stderr, flush=True)
    teacher = LocalTeacher(model_dir, device=device, batch_size=max_batch, model_name=model_name, dtype=dtype)
    app = create_app(teacher, model_name=model_name, max_batch=max_batch)
    uvicorn.run(app, host=host, port=port, log_level="warning")


# ---------------------------------------------------------------------------------------------
# running a server
# ---------------------------------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _wait_ready(base_url: str, timeout_s: float, alive=lambda: True) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("server process exited during startup")
        try:
            response = httpx.get(f"{base_url}/models", timeout=2.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise TimeoutError(f"server at {base_url} not ready after {timeout_s:.0f} s ({last})")


@dataclass(frozen=True)
class Endpoint:
    """Where a running server answers: ``base_url`` ends in ``/v1``; ``model`` is its model name."""

    base_url: str
    model: str


@contextlib.contextmanager
def served_teacher(model_dir: str | Path, model_name: str | None = None, host: str = "127.0.0.1",
                   port: int | None = None, max_batch: int = 16,
                   startup_timeout_s: float = 180.0, dtype: str = "float32") -> Iterator[Endpoint]:
    """Start ``python -m imitlib serve`` in a subprocess on a free port; stop it on exit.

    Yields:
        the :class:`Endpoint` to point an OpenAI client at.
    """
    model_dir = Path(model_dir).resolve()
    if not model_dir.exists():
        raise FileNotFoundError(f"model folder not found: {model_dir}")
    name = model_name or model_dir.name
    port = port or free_port(host)
    log = tempfile.NamedTemporaryFile(prefix="imitlib-serve-", suffix=".log", delete=False)
    command = [sys.executable, "-m", "imitlib", "serve", str(model_dir), "--host", host, "--port", str(port),
               "--model-name", name, "--max-batch", str(max_batch), "--dtype", dtype]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if "torch" in sys.modules:  # the server uses as many torch threads as its caller (one per seed worker)
        env["OMP_NUM_THREADS"] = str(sys.modules["torch"].get_num_threads())
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent)
    base_url = f"http://{host}:{port}/v1"
    try:
        try:
            _wait_ready(base_url, startup_timeout_s, alive=lambda: process.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            tail = Path(log.name).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"teacher server for {model_dir} did not start: {exc}\n--- server log ---\n{tail}") from None
        yield Endpoint(base_url=base_url, model=name)
    finally:
        stop_process(process)
        log.close()
        with contextlib.suppress(OSError):
            os.unlink(log.name)


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int | None = None,
                    startup_timeout_s: float = 60.0) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a background thread of this process; yields its ``/v1`` URL."""
    import uvicorn

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    base_url = f"http://{host}:{port}/v1"
    try:
        _wait_ready(base_url, startup_timeout_s, alive=thread.is_alive)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
