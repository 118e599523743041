"""The teacher behind an API: served vs local answers, resumable cached collection, retries, 4xx errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "imitation"))
from tiny_world import build_tiny_world  # noqa: E402

from imitlib.settings.imitation import TeacherSettings  # noqa: E402
from imitlib.teacher import Sampling, TeacherError, collect  # noqa: E402
from imitlib.teacher.cache import ResponseCache, response_key  # noqa: E402
from imitlib.teacher.client import OpenAITeacher, resolve_api_key  # noqa: E402
from imitlib.teacher.local import LocalTeacher  # noqa: E402
from imitlib.teacher.server import create_app, serve_in_thread, served_teacher  # noqa: E402

GREEDY = Sampling(max_new_tokens=12, temperature=0.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return build_tiny_world(tmp_path_factory.mktemp("tiny_world"))


@pytest.fixture(scope="module")
def local_teacher(world):
    return LocalTeacher(world.teacher_dir, device="cpu", batch_size=4, model_name="teacher")


@pytest.fixture(scope="module")
def conversations(world):
    return [[{"role": "user", "content": item["prompt"]}] for item in world.items[:16]]


@pytest.fixture()
def in_process_server(local_teacher):
    app = create_app(local_teacher, model_name="teacher", max_batch=8)
    with serve_in_thread(app) as base_url:
        yield app, base_url


def test_served_teacher_matches_local_backend(world, local_teacher, conversations, tmp_path):
    """`python -m imitlib serve` in a subprocess, reached with the real openai client, answers exactly
    as the in-process local backend does (greedy), and lists its model."""
    local = collect(conversations, local_teacher, tmp_path / "local", GREEDY)
    assert sum(bool(a) for a in local) >= len(local) // 2, "the tiny teacher should say something"
    with served_teacher(world.teacher_dir, model_name="teacher") as endpoint:
        assert endpoint.base_url.startswith("http://127.0.0.1:")
        client = OpenAITeacher(endpoint.base_url, endpoint.model, "unused", max_concurrency=4)
        assert [m.id for m in client.client.models.list().data] == ["teacher"]
        served = collect(conversations, client, tmp_path / "served", GREEDY)
        assert client.requests_sent == len(conversations)
    assert served == local


def test_interrupted_collection_resends_only_unanswered(in_process_server, local_teacher, conversations, tmp_path):
    app, base_url = in_process_server
    client = OpenAITeacher(base_url, "teacher", "unused", max_concurrency=3)
    stop_after = 6

    class Interrupted(Exception):
        pass

    received: list[int] = []

    def interrupt(index: int, text: str) -> None:
        received.append(index)
        if len(received) == stop_after:
            raise Interrupted

    with pytest.raises(Interrupted):
        collect(conversations, client, tmp_path / "cache", GREEDY, on_answer=interrupt)
    cached = len(ResponseCache(tmp_path / "cache"))
    assert stop_after <= cached < len(conversations)
    hits_before = app.state.requests
    resumed = collect(conversations, client, tmp_path / "cache", GREEDY)
    assert app.state.requests - hits_before == len(conversations) - cached  # only the unanswered ones
    assert resumed == collect(conversations, local_teacher, tmp_path / "local", GREEDY)
    hits_before = app.state.requests
    assert collect(conversations, client, tmp_path / "cache", GREEDY) == resumed
    assert app.state.requests == hits_before  # everything answered: nothing sent


def test_sampled_answers_are_seeded_per_prompt(in_process_server, conversations, tmp_path):
    _, base_url = in_process_server
    sampled = Sampling(max_new_tokens=12, temperature=1.0, seed=3)
    first = collect(conversations, OpenAITeacher(base_url, "teacher", "x", max_concurrency=4), tmp_path / "a", sampled)
    # other order, other concurrency: the same text for each prompt
    reverse = collect(conversations[::-1], OpenAITeacher(base_url, "teacher", "x", max_concurrency=1),
                      tmp_path / "b", sampled)
    assert reverse[::-1] == first
    other_seed = collect(conversations, OpenAITeacher(base_url, "teacher", "x"), tmp_path / "c",
                         Sampling(max_new_tokens=12, temperature=1.0, seed=4))
    assert other_seed != first


def test_server_rejects_bad_requests_with_json_4xx(in_process_server):
    _, base_url = in_process_server
    url = f"{base_url}/chat/completions"
    ok = {"model": "teacher", "messages": [{"role": "user", "content": "What job did Alvor have ?"}], "max_tokens": 4}
    assert httpx.post(url, json=ok, timeout=30).status_code == 200
    cases = [
        (httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400),
        (httpx.post(url, json={"model": "teacher"}), 400),
        (httpx.post(url, json={**ok, "messages": []}), 400),
        (httpx.post(url, json={**ok, "messages": [{"role": "assistant", "content": "hi"}]}), 400),
        (httpx.post(url, json={**ok, "messages": [{"role": "wizard", "content": "hi"}]}), 400),
        (httpx.post(url, json={**ok, "max_tokens": 10**6}), 400),
        (httpx.post(url, json={**ok, "temperature": -1}), 400),
        (httpx.post(url, json={**ok, "stream": "sometimes"}), 400),
        (httpx.post(url, json={**ok, "stream": True, "stream_options": {"include_usage": "yes"}}), 400),
        (httpx.post(url, json={**ok, "stream": True, "model": "gpt-4"}), 404),  # refused before streaming starts
        (httpx.post(url, json={**ok, "model": "gpt-4"}), 404),
        (httpx.post(url, json={**ok, "messages": [{"role": "user", "content": "Alvor " * 400}]}), 400),
        (httpx.post(url, content=b"x" * 1_100_000, headers={"content-type": "application/json"}), 413),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["message"]
    assert "context length" in cases[-2][0].json()["error"]["message"]
    assert httpx.get(f"{base_url}/nowhere").status_code == 404
    # a 4xx is not retried: the client fails at once with the server's message
    client = OpenAITeacher(base_url, "gpt-4", "x", max_retries=5, backoff_s=5.0)
    with pytest.raises(TeacherError, match="404"):
        client.request([{"role": "user", "content": "hi"}], GREEDY)
    assert client.requests_sent == 1


def _flaky_app(script: list[str]):
    """An endpoint answering with a scripted sequence of failures before a good completion."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, PlainTextResponse

    app = FastAPI()
    app.state.hits = 0

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": "flaky", "object": "model", "created": 0, "owned_by": "test"}]}

    @app.post("/v1/chat/completions")
    def chat():
        step = script[min(app.state.hits, len(script) - 1)]
        app.state.hits += 1
        if step == "429":
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429, headers={"retry-after": "0"})
        if step == "500":
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if step == "garbled":
            return PlainTextResponse("<html>bad gateway</html>", status_code=200, media_type="application/json")
        if step == "nochoices":
            return {"id": "x", "object": "chat.completion", "created": 0, "model": "flaky", "choices": []}
        return {"id": "x", "object": "chat.completion", "created": 0, "model": "flaky",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}]}

    return app


def test_retries_on_rate_limits_server_errors_and_garbled_bodies(tmp_path):
    app = _flaky_app(["429", "500", "garbled", "nochoices", "ok"])
    with serve_in_thread(app) as base_url:
        client = OpenAITeacher(base_url, "flaky", "x", max_retries=5, backoff_s=0.01)
        assert collect([[{"role": "user", "content": "hi"}]], client, tmp_path, GREEDY) == ["fine"]
        assert app.state.hits == 5
    app = _flaky_app(["500"])
    with serve_in_thread(app) as base_url:
        client = OpenAITeacher(base_url, "flaky", "x", max_retries=2, backoff_s=0.01)
        with pytest.raises(TeacherError, match="3 attempts"):
            collect([[{"role": "user", "content": "hi"}]], client, tmp_path / "b", GREEDY)
        assert app.state.hits == 3
    assert len(ResponseCache(tmp_path / "b")) == 0


def test_cache_survives_a_torn_last_line_and_names_broken_lines(tmp_path):
    cache = ResponseCache(tmp_path)
    messages = [{"role": "user", "content": "hi"}]
    key = response_key("m", messages, GREEDY)
    cache.put(key, "hello", "m", messages, GREEDY)
    with open(cache.path, "ab") as handle:
        handle.write(b'{"key": "abc", "answ')  # a crash mid-write
    reopened = ResponseCache(tmp_path)
    assert reopened.get(key) == "hello" and len(reopened) == 1
    reopened.put("k2", "second", "m", messages, GREEDY)
    assert len(ResponseCache(tmp_path)) == 2
    lines = cache.path.read_text().splitlines()
    cache.path.write_text("\n".join([lines[0], "garbage", lines[1]]) + "\n")
    with pytest.raises(ValueError, match=r"responses\.jsonl:2"):
        ResponseCache(tmp_path)
    # the key covers model and sampling parameters
    assert response_key("m", messages, GREEDY) != response_key("m2", messages, GREEDY)
    assert response_key("m", messages, GREEDY) != response_key("m", messages, Sampling(max_new_tokens=13))
    assert response_key("m", messages, Sampling(temperature=1.0, seed=1)) != response_key(
        "m", messages, Sampling(temperature=1.0, seed=2))


def test_api_key_comes_from_the_named_environment_variable(monkeypatch):
    monkeypatch.delenv("IMITLIB_TEST_KEY", raising=False)
    with pytest.raises(TeacherError, match="IMITLIB_TEST_KEY"):
        resolve_api_key("IMITLIB_TEST_KEY", "https://api.example.com/v1")
    assert resolve_api_key("IMITLIB_TEST_KEY", "http://127.0.0.1:8000/v1")  # own loopback server
    monkeypatch.setenv("IMITLIB_TEST_KEY", "secret-value")
    assert resolve_api_key("IMITLIB_TEST_KEY", "https://api.example.com/v1") == "secret-value"
    with pytest.raises(ValueError, match="NAME of an environment variable"):
        TeacherSettings(api_key_env="sk-1234abcd")
    with pytest.raises(ValueError, match="base_url and model"):
        TeacherSettings(backend="openai")


def test_client_sends_shortest_prompts_first_and_answers_in_input_order(monkeypatch):
    client = OpenAITeacher("http://127.0.0.1:9/v1", "teacher", "unused", max_concurrency=1)
    sent = []

    def fake_request(messages, sampling):
        sent.append(messages[-1]["content"])
        return messages[-1]["content"].upper()

    monkeypatch.setattr(client, "request", fake_request)
    prompts = ["a much longer prompt here", "mid prompt", "x", "longest prompt of them all, by far"]
    answers = client.answer([[{"role": "user", "content": p}] for p in prompts], Sampling(max_new_tokens=4))
    assert sent == sorted(prompts, key=len)
    assert answers == [p.upper() for p in prompts]


# ---- streaming ---------------------------------------------------------------------------------
def _stream(client, messages, **kwargs):
    """(role of the first delta, content deltas, finish reasons, usage) of one streamed completion."""
    role, deltas, finishes, usage = None, [], [], None
    for chunk in client.chat.completions.create(model="teacher", messages=messages, stream=True,
                                                stream_options={"include_usage": True}, **kwargs):
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            assert chunk.choices == []
            usage = chunk.usage
            continue
        (choice,) = chunk.choices
        if choice.delta.role is not None:
            assert role is None and not deltas
            role = choice.delta.role
        if choice.delta.content:
            deltas.append(choice.delta.content)
        if choice.finish_reason is not None:
            finishes.append(choice.finish_reason)
    return role, deltas, finishes, usage


def test_streamed_answers_add_up_to_the_unstreamed_ones(in_process_server, conversations):
    """The openai client's streaming API against the own server: a role delta, several content
    deltas adding up to the unstreamed answer (greedy and seeded sampling), one finish reason, usage."""
    from openai import OpenAI

    _, base_url = in_process_server
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    several = 0
    for messages, sampling in [(c, dict(temperature=0.0)) for c in conversations[:6]] + \
            [(c, dict(temperature=1.0, seed=5)) for c in conversations[:3]]:
        whole = client.chat.completions.create(model="teacher", messages=messages, max_tokens=12, **sampling)
        role, deltas, finishes, usage = _stream(client, messages, max_tokens=12, **sampling)
        assert role == "assistant"
        assert "".join(deltas) == whole.choices[0].message.content
        assert finishes == [whole.choices[0].finish_reason]
        assert usage.completion_tokens == whole.usage.completion_tokens
        assert usage.prompt_tokens == whole.usage.prompt_tokens
        several += len(deltas) > 1
    assert several >= 3, "answers should arrive in several deltas, not in one piece"


def test_streaming_honours_stop_strings(in_process_server, conversations):
    from openai import OpenAI

    _, base_url = in_process_server
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    messages = next(c for c in conversations
                    if len(client.chat.completions.create(model="teacher", messages=c, max_tokens=12,
                                                          temperature=0.0).choices[0].message.content.split()) >= 3)
    full = client.chat.completions.create(model="teacher", messages=messages, max_tokens=12,
                                          temperature=0.0).choices[0].message.content
    stop = " " + full.split()[2]  # a word in the middle of the answer
    cut = client.chat.completions.create(model="teacher", messages=messages, max_tokens=12, temperature=0.0,
                                         stop=[stop])
    role, deltas, finishes, _ = _stream(client, messages, max_tokens=12, temperature=0.0, stop=[stop])
    assert "".join(deltas) == cut.choices[0].message.content == full[:full.index(stop)]
    assert finishes == ["stop"]


def test_stream_is_server_sent_events_ending_in_done(in_process_server):
    _, base_url = in_process_server
    body = {"model": "teacher", "messages": [{"role": "user", "content": "What job did Alvor have ?"}],
            "max_tokens": 6, "stream": True}
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: "):]) for line in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1]["choices"][0]["delta"] == {} and chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all("usage" not in c for c in chunks)  # usage only when stream_options.include_usage asks
