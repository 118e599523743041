"""Served teacher throughput: the project's OpenAI-compatible server at concurrency 8 vs the same model in-process.

The served side starts ``python -m imitlib serve`` on 127.0.0.1 (:func:`imitlib.teacher.server.served_teacher`,
batches of at most ``--batch-size``) and sends every prompt through the project's client
(:class:`imitlib.teacher.client.OpenAITeacher`, the official ``openai`` client in a thread pool with
``--concurrency`` requests in flight). The in-process side answers the same prompts with
:class:`imitlib.teacher.local.LocalTeacher` at the same batch size. Greedy decoding, same
``max_new_tokens``. The model is the default world's teacher when it has been built, else a small
Llama from config.

Usage: python benchmarks/bench_serving.py [--model-dir DIR|gguf:PKG] [--prompts 64] [--concurrency 8] [--repeats 5]
       [--dtype bfloat16] [--target 0.95] [--name served_teacher_real]
Target: ≥ 0.8× the in-process answers/s (the world's teacher); ≥ 0.95× on the real track's teacher, where a
request's generation takes seconds and an HTTP round trip should not count.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

sys.path.insert(0, str(Path(__file__).parent))
from harness import compare  # noqa: E402
from synthetic import synthetic_conversations, synthetic_model  # noqa: E402

from imitlib.config import PROJECT_ROOT  # noqa: E402
from imitlib.teacher.cache import Sampling  # noqa: E402
from imitlib.teacher.client import OpenAITeacher, resolve_api_key  # noqa: E402
from imitlib.teacher.local import LocalTeacher  # noqa: E402
from imitlib.teacher.server import Endpoint, create_app, serve_in_thread, served_teacher  # noqa: E402

STUDY_THREADS = 2


def default_teacher(seed: int = 0, run_dir: Path = PROJECT_ROOT / "outputs" / "default") -> Path | None:
    """The newest completed default world's teacher folder (None when none has been built)."""
    worlds = [w for w in (run_dir / "stages" / "01_world" / f"seed{seed}").glob("*/")
              if (w / "COMPLETE").exists() and (w / "models" / "teacher" / "config.json").exists()]
    if not worlds:
        return None
    return max(worlds, key=lambda w: (w / "COMPLETE").stat().st_mtime) / "models" / "teacher"


def default_prompts(count: int, seed: int = 0, run_dir: Path = PROJECT_ROOT / "outputs" / "default") -> list[list[dict]] | None:
    """The first ``count`` imitation prompts (user turns) of the newest completed imitation-data stage."""
    import json

    folders = [f for f in (run_dir / "stages" / "02_imitation_data" / f"seed{seed}").glob("*/")
               if (f / "COMPLETE").exists() and (f / "suites" / "broad.jsonl").exists()]
    if not folders:
        return None
    folder = max(folders, key=lambda f: (f / "COMPLETE").stat().st_mtime)
    prompts = []
    for line in (folder / "suites" / "broad.jsonl").read_text().splitlines()[:count]:
        row = json.loads(line)
        prompts.append([{"role": "user", "content": row.get("prompt") or row["messages"][-1]["content"]}])
    return prompts if len(prompts) == count else None


def served_in_thread(teacher: LocalTeacher, batch_size: int) -> Iterator[Endpoint]:
    """The same server app run by uvicorn in a thread of this process (for quick tests)."""
    with serve_in_thread(create_app(teacher, model_name="teacher", max_batch=batch_size)) as base_url:
        yield Endpoint(base_url=base_url, model="teacher")


def benchmark(model_dir: Path, conversations: list[list[dict]], concurrency: int = 8, batch_size: int = 8,
              max_new_tokens: int = 64, repeats: int = 5, source: str = "", results_dir: Path | None = None,
              name: str = "served_teacher", in_thread: bool = False, dtype: str = "float32",
              target_ratio: float = 0.8) -> dict[str, Any]:
    """Measure served (concurrent clients) and in-process answers/s alternately; write ``<name>.json``.

    ``in_thread`` serves from a thread of this process instead of ``python -m imitlib serve`` in a
    subprocess (the measurement then shares this process's interpreter; for tests only).
    """
    sampling = Sampling(max_new_tokens=max_new_tokens, temperature=0.0)
    local = LocalTeacher(model_dir, device="cpu", batch_size=batch_size, model_name="teacher", dtype=dtype)
    answers: dict[str, list[str]] = {}
    extra: dict[str, Any] = {"agreement": {}}
    if in_thread:
        server = contextlib.contextmanager(served_in_thread)(
            LocalTeacher(model_dir, device="cpu", batch_size=batch_size, model_name="teacher", dtype=dtype), batch_size)
    else:
        server = served_teacher(model_dir, model_name="teacher", max_batch=batch_size, dtype=dtype)
    with server as endpoint:
        client = OpenAITeacher(endpoint.base_url, endpoint.model, resolve_api_key("OPENAI_API_KEY", endpoint.base_url),
                               max_concurrency=concurrency, max_retries=0)

        def served() -> float:
            answers["served"] = client.answer(conversations, sampling)
            return float(len(answers["served"]))

        def in_process() -> float:
            answers["local"] = local.answer(conversations, sampling)
            same = sum(a == b for a, b in zip(answers["served"], answers["local"]))
            extra["agreement"] = {"identical_answers": same, "of": len(conversations),
                                  "note": "greedy; batches differ in composition (arrival order vs length-sorted), "
                                          "so padding may change a few answers"}
            return float(len(answers["local"]))

        return compare(
            name, (f"served (imitlib serve, {concurrency} concurrent clients)", served),
            ("in-process LocalTeacher", in_process), units="answers/s", target_ratio=target_ratio, repeats=repeats,
            notes=(f"{source}; {dtype}; {len(conversations)} prompts, greedy, max_new_tokens {max_new_tokens}, batch "
                   f"{batch_size} on both sides, concurrency {concurrency}, torch threads {torch.get_num_threads()} "
                   f"here and in the server process (OMP_NUM_THREADS), both on the same cores"),
            extra=extra, results_dir=results_dir,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", help="a model folder (default: the default world's teacher)")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=STUDY_THREADS,
                        help="torch threads here and in the server process (the study: 2)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--target", type=float, default=0.8, help="target ratio served / in-process")
    parser.add_argument("--name", default=None, help="results file name (default: served_teacher[_threadsN])")
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["OMP_NUM_THREADS"] = str(options.threads)  # read by torch in the server process
    torch.set_num_threads(options.threads)
    name = options.name or ("served_teacher" if options.threads == STUDY_THREADS
                            else f"served_teacher_threads{options.threads}")
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        if options.model_dir and options.model_dir.startswith("gguf:"):
            from imitlib.models import default_model_cache, resolve_model

            model_dir = resolve_model(options.model_dir, default_model_cache())
        else:
            model_dir = Path(options.model_dir) if options.model_dir else default_teacher()
        source = f"model {model_dir}"
        if model_dir is None:
            model_dir = synthetic_model(Path(scratch) / "teacher")
            source = "synthetic Llama (base-m shape, random weights)"
        conversations = default_prompts(options.prompts)
        if conversations is None:
            conversations = [c[:1] for c in synthetic_conversations(options.prompts)]
            source += ", synthetic prompts"
        else:
            source += ", the default study's broad imitation prompts"
        benchmark(model_dir, conversations, options.concurrency, options.batch_size, options.new_tokens,
                  options.repeats, source, name=name, dtype=options.dtype, target_ratio=options.target)


if __name__ == "__main__":
    main()
