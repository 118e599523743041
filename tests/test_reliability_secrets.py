"""Reliability: the API key comes only from the environment and is written nowhere (issue 10, item 4)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "reliability"))
from fault_endpoint import fault_app  # noqa: E402

from imitlib.config import PROJECT_ROOT, dumps, load  # noqa: E402
from imitlib.teacher.server import serve_in_thread  # noqa: E402

KEY_ENV = "IMITLIB_RELIABILITY_API_KEY"
FAKE_KEY = "sk-imitlib-FAKE-3c9f1e7d52ab4e08b6a1-do-not-leak"
WORKER = Path(__file__).parent / "fixtures" / "reliability" / "secrets_worker.py"
N_PROMPTS = 24


def files_containing(root: Path, needle: str) -> list[Path]:
    """Files under ``root`` whose bytes contain ``needle`` (as UTF-8, or its distinctive middle part)."""
    parts = [needle.encode(), needle[10:30].encode()]
    return [p for p in sorted(root.rglob("*")) if p.is_file() and any(part in p.read_bytes() for part in parts)]


def _run_worker(base_url: str, out: Path, key: str | None, logs: Path) -> int:
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    if key is not None:
        env[KEY_ENV] = key
    env["OPENAI_LOG"] = "debug"
    with open(logs / "stdout.log", "ab") as stdout, open(logs / "stderr.log", "ab") as stderr:
        return subprocess.run([sys.executable, str(WORKER), base_url, str(out), KEY_ENV, str(N_PROMPTS)],
                              cwd=PROJECT_ROOT, env=env, stdout=stdout, stderr=stderr, timeout=120).returncode


def test_api_key_is_used_but_never_written(tmp_path):
    out, logs = tmp_path / "outputs", tmp_path / "logs"
    logs.mkdir()
    app = fault_app(seed=4, attempt_fault_rates=(0.3,), kinds=("429", "500"), required_key=FAKE_KEY)
    with serve_in_thread(app) as base_url:
        assert _run_worker(base_url, out, FAKE_KEY, logs) == 0, (logs / "stderr.log").read_text()[-3000:]
        stats = app.state.stats
        # the key did reach the endpoint: every prompt answered, nothing refused
        assert len(stats.answered) == N_PROMPTS and stats.unauthorized == 0
        # a wrong key is refused (401, not retried) and the error names no key either
        assert _run_worker(base_url, tmp_path / "refused", "sk-wrong-" + FAKE_KEY[::-1], logs) != 0
        assert 1 <= stats.unauthorized <= 4  # the requests in flight (max_concurrency 4), none retried
    stderr = (logs / "stderr.log").read_text()
    assert "refused the request (401)" in stderr and KEY_ENV in (out / "secrets" / "config.yaml").read_text()
    assert "httpx" in stderr and "openai" in stderr  # the client libraries did log (at DEBUG)

    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert any(p.endswith("manifest.json") for p in written) and any(p.endswith("responses.jsonl") for p in written)
    assert files_containing(tmp_path, FAKE_KEY) == [], "the API key was written to a file"
    assert files_containing(tmp_path, FAKE_KEY[::-1]) == []
    print(f"\n[secrets] {len(written)} files scanned ({', '.join(written)}): 0 contain the key")


def test_scan_finds_a_planted_key(tmp_path):
    """The scan itself can fail: a key planted in a file is found."""
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "log.txt").write_text(f"Authorization: Bearer {FAKE_KEY}\n")
    (tmp_path / "clean.txt").write_text("nothing here\n")
    assert files_containing(tmp_path, FAKE_KEY) == [tmp_path / "deep" / "log.txt"]


def test_config_dumps_never_hold_the_key(monkeypatch, tmp_path):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    cfg = load([], {"run.output_root": str(tmp_path), "imitation.teacher.backend": "openai",
                    "imitation.teacher.base_url": "https://api.example.com/v1",
                    "imitation.teacher.model": "gpt-x", "imitation.teacher.api_key_env": KEY_ENV})
    for text in (cfg.to_yaml(), dumps(cfg), cfg.model_dump_json(), repr(cfg), str(cfg.subset("imitation"))):
        assert KEY_ENV in text and FAKE_KEY not in text
