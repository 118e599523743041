"""Streaming answers of the own server (issue 19, item 5), with a scripted teacher whose tokens the
test releases one by one: deltas arrive as tokens are generated, stop strings split across tokens
are held back, and a client that goes away stops the generation."""

from __future__ import annotations

import threading

import httpx
import pytest

from imitlib.teacher.server import create_app, serve_in_thread

WORDS = ["Paris", " is", " the", " capital", " of", " France", ".", " It", " lies", " on", " the", " Seine", "."]


class _Tokenizer:
    """Token i is WORDS[i]; decoding joins them (no special tokens)."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(WORDS[i % len(WORDS)] for i in ids)


class ScriptedTeacher:
    """The interface the server uses, generating WORDS one token at a time, each only once the test
    releases it (``gate``); ``puts`` counts the tokens handed to the streamer."""

    model_id = "scripted"
    context_length = 4096

    def __init__(self) -> None:
        self.tokenizer = _Tokenizer()
        self.batch_size = 1
        self.gate = threading.Semaphore(0)
        self.puts = 0
        self.finished = threading.Event()
        self.stopped_by: str | None = None

    def render(self, messages):
        return " ".join(m["content"] for m in messages)

    def count_tokens(self, text):
        return len(text.split())

    def answer(self, conversations, sampling, streamer=None, **_):
        import torch

        try:
            if streamer is not None:
                streamer.put(torch.tensor([[0, 0, 0]]))  # the prompt, as generate() pushes it first
            for step in range(sampling.max_new_tokens):
                if not self.gate.acquire(timeout=60):
                    raise TimeoutError("the test released no token")
                self.puts += 1
                if streamer is not None:
                    streamer.put(torch.tensor([step]))
            return ["".join(WORDS[i % len(WORDS)] for i in range(sampling.max_new_tokens)).strip()]
        except Exception as exc:
            self.stopped_by = str(exc)
            raise
        finally:
            self.finished.set()


@pytest.fixture()
def scripted():
    teacher = ScriptedTeacher()
    with serve_in_thread(create_app(teacher, model_name="scripted", max_batch=1)) as base_url:
        yield teacher, base_url


def _body(**extra):
    return {"model": "scripted", "messages": [{"role": "user", "content": "Where is Paris?"}], "stream": True, **extra}


def _events(lines):
    for line in lines:
        if line:
            yield line


def test_deltas_arrive_token_by_token(scripted):
    import json

    teacher, base_url = scripted
    with httpx.stream("POST", f"{base_url}/chat/completions", json=_body(max_tokens=6), timeout=60) as response:
        events = _events(response.iter_lines())
        first = json.loads(next(events)[len("data: "):])
        assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        seen = []
        for _ in range(3):  # each released token comes out as its own delta before the next is made
            teacher.gate.release()
            chunk = json.loads(next(events)[len("data: "):])
            seen.append(chunk["choices"][0]["delta"]["content"])
        assert seen == ["Paris", " is", " the"] and teacher.puts == 3
        for _ in range(3):
            teacher.gate.release()
        rest = list(events)
    assert rest[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: "):]) for line in rest[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == " capital of France"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_a_stop_string_across_tokens_is_never_sent(scripted):
    from openai import OpenAI

    teacher, base_url = scripted
    for _ in range(len(WORDS)):
        teacher.gate.release()
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    deltas, finishes = [], []
    for chunk in client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "x"}],
                                                max_tokens=len(WORDS), stream=True, stop=[" capital of Fr"]):
        deltas += [chunk.choices[0].delta.content or ""]
        finishes += [chunk.choices[0].finish_reason]
    assert "".join(deltas) == "Paris is the"
    assert not any(" capital" in d for d in deltas)  # " capital" waited, in case the stop string followed
    assert finishes[-1] == "stop" and teacher.stopped_by == "stop string generated"
    assert teacher.puts == 6  # generation ended at the token completing the stop string ("France")


def test_a_client_that_goes_away_stops_the_generation(scripted):
    teacher, base_url = scripted
    limit = 200
    with httpx.stream("POST", f"{base_url}/chat/completions", json=_body(max_tokens=limit), timeout=60) as response:
        events = _events(response.iter_lines())
        next(events)  # the role chunk
        teacher.gate.release()
        assert "Paris" in next(events)
    # the client has closed the connection; the server notices when it next sends a delta
    released = 1
    while not teacher.finished.is_set() and released < limit:
        teacher.gate.release()
        released += 1
        teacher.finished.wait(timeout=0.5)
    assert teacher.finished.wait(timeout=60)
    assert teacher.stopped_by == "client closed the stream" and teacher.puts < limit
    # still serving
    for _ in range(2):
        teacher.gate.release()
    answer = httpx.post(f"{base_url}/chat/completions", timeout=60,
                        json={**_body(max_tokens=2), "stream": False}).json()
    assert answer["choices"][0]["message"]["content"] == "Paris is"
