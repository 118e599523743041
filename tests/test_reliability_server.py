"""Reliability: ``python -m imitlib serve`` binds to loopback by default, refuses malformed and
oversized requests with a JSON 4xx, and answers a burst of concurrent requests (issue 10, item 6)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from imitlib.config import PROJECT_ROOT  # noqa: E402
from imitlib.processes import stop_process  # noqa: E402
from imitlib.teacher.server import MAX_REQUEST_BYTES, free_port  # noqa: E402

LAUNCHER = Path(__file__).parent / "fixtures" / "reliability" / "serve_tiny_teacher.py"
BURST = 32
GOOD = {"model": "teacher", "messages": [{"role": "user", "content": "What job did Alvor have ?"}], "max_tokens": 6,
        "temperature": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The CLI server on the tiny teacher, started as a user would (no --host)."""
    root = tmp_path_factory.mktemp("served")
    port = free_port()
    log = open(root / "server.log", "wb")
    process = subprocess.Popen([sys.executable, str(LAUNCHER), str(root / "teacher"), "--port", str(port),
                                "--model-name", "teacher", "--max-batch", "16"],
                               cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (root / "server.log").read_text()
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        yield process, base_url
    finally:
        stop_process(process)
        log.close()


def test_binds_to_loopback_by_default(server):
    process, base_url = server
    listening = [c.laddr for c in psutil.Process(process.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening and all(address.ip == "127.0.0.1" for address in listening), listening
    assert listening[0].port == int(base_url.rsplit(":", 1)[1].split("/")[0])


def _chunked(data: bytes, size: int = 65536):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_malformed_and_oversized_requests_get_a_json_4xx(server):
    _, base_url = server
    url = f"{base_url}/chat/completions"
    headers = {"content-type": "application/json"}
    huge_message = json.dumps({**GOOD, "messages": [{"role": "user", "content": "Alvor " * 5}] * 3
                               + [{"role": "user", "content": "x" * 150_000}] * 9}).encode()
    assert len(huge_message) > MAX_REQUEST_BYTES
    cases = {
        "malformed JSON": (httpx.post(url, content=b'{"model": "teacher", "messages": [', headers=headers), 400),
        "not an object": (httpx.post(url, json=["model", "teacher"]), 400),
        "missing messages": (httpx.post(url, json={"model": "teacher"}), 400),
        "missing model": (httpx.post(url, json={"messages": GOOD["messages"]}), 400),
        "message without content": (httpx.post(url, json={**GOOD, "messages": [{"role": "user"}]}), 400),
        "unknown role": (httpx.post(url, json={**GOOD, "messages": [{"role": "wizard", "content": "hi"}]}), 400),
        "ends with assistant": (httpx.post(url, json={**GOOD, "messages": [
            {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}), 400),
        "content not a string": (httpx.post(url, json={**GOOD, "messages": [{"role": "user", "content": 7}]}), 400),
        "oversized body": (httpx.post(url, content=huge_message, headers=headers), 413),
        "oversized chunked body": (httpx.post(url, content=_chunked(huge_message), headers=headers), 413),
    }
    for what, (response, status) in cases.items():
        assert response.status_code == status, (what, response.status_code, response.text[:300])
        assert response.json()["error"]["message"], what
    assert httpx.post(url, json=GOOD, timeout=60).status_code == 200  # still serving


def test_survives_a_burst_of_concurrent_requests(server):
    _, base_url = server
    url = f"{base_url}/chat/completions"
    before = httpx.get(base_url.replace("/v1", "/health")).json()
    prompts = [f"In what city was {name} born ?" for name in ("Alvor", "Brisk", "Corran", "Dessa")] * (BURST // 4)

    def ask(prompt: str) -> httpx.Response:
        return httpx.post(url, json={**GOOD, "messages": [{"role": "user", "content": prompt}]}, timeout=120)

    with ThreadPoolExecutor(max_workers=BURST) as pool:
        responses = list(pool.map(ask, prompts))
    assert [r.status_code for r in responses] == [200] * BURST
    texts = [r.json()["choices"][0]["message"]["content"] for r in responses]
    assert all(texts[i] == texts[i % 4] for i in range(BURST))  # greedy: the same prompt, the same answer
    after = httpx.get(base_url.replace("/v1", "/health")).json()
    assert after["answered"] - before["answered"] == BURST
    batches = after["batches"] - before["batches"]
    assert batches < BURST  # answered together, in batches
    print(f"\n[server] burst of {BURST}: {BURST} answered 200 in {batches} batches")


def _stopped(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_served_teacher_stops_when_its_caller_is_killed(server):
    """A pipeline killed with SIGKILL must not leave its teacher server running."""
    model_dir = server[0].args[2]
    code = ("import sys, time, psutil\n"
            "from imitlib.teacher.server import served_teacher\n"
            "with served_teacher(sys.argv[1], model_name='teacher'):\n"
            "    print(psutil.Process().children()[0].pid, flush=True)\n"
            "    time.sleep(600)\n")
    caller = subprocess.Popen([sys.executable, "-c", code, model_dir], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(caller.stdout.readline())
        assert not _stopped(server_pid)
    finally:
        caller.kill()
        caller.wait()
    deadline = time.monotonic() + 30
    while not _stopped(server_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    stopped = _stopped(server_pid)
    if not stopped:
        psutil.Process(server_pid).kill()
    assert stopped, "the teacher server outlived the process that started it"
