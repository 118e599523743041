"""One model's answers: its lm-eval benchmarks and its chat answers to the held-out prompts.

This is the cached unit of evaluation, one per (seed, model): ``04_evaluate/seed<N>/models/<model>/<hash>/``
(keyed by :func:`imitlib.dag.unit`: the evaluation params less the rater-only ones, this module's code,
the world and imitation-data keys and, for an imitation model, the key of its sweep run). Adding a
finetune adds one unit; the others are reused. The model is loaded once per unit: lm-eval's
``hf`` backend evaluates the same weights in memory that answer the chat prompts. Rating the answers against the teacher is a separate
step (:func:`imitlib.evaluate.core.rate_answers`) that reads these folders.

Files of a unit:

- ``lm_eval_tasks/``: the world's task YAMLs and item files it ran (``lm_eval --include_path``);
- ``lm_eval/results.json``, ``lm_eval/samples_<task>.jsonl``: lm-eval's own output;
- ``benchmarks.parquet``: lm-eval aggregate scores (task, metric, value, stderr, ...);
- ``benchmark_samples.parquet``: one row per benchmark item (``mode = "benchmark"``);
- ``chat_answers.jsonl``: ``{"item_id", "answer"}`` per held-out chat prompt (the teacher's are its
  second, sampled answers from the imitation data: the ceiling).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd

from imitlib.data.suites import chat_items as select_chat_items
from imitlib.evaluate.benchmarks import benchmark_samples, benchmark_scores, run_benchmarks, write_world_tasks
from imitlib.generation import generate_chat
from imitlib.models import load_model
from imitlib.settings.evaluate import EvaluateSettings
from imitlib.stages import atomic_path, atomic_write_text

CHAT_ANSWERS = "chat_answers.jsonl"
BENCHMARKS = "benchmarks.parquet"
BENCHMARK_SAMPLES = "benchmark_samples.parquet"


@dataclass
class ModelEntry:
    """One model to evaluate and what it is."""

    model_id: str
    path: str
    role: str                 # base | imitation | replay_control | teacher
    base_model: str
    base_params: int
    data_kind: str = "none"   # none | broad | task
    imitation_tokens: int = 0
    seed: int = 0

    def columns(self) -> dict[str, Any]:
        """The per-sample columns that describe the model (everything but its folder)."""
        return {k: v for k, v in asdict(self).items() if k != "path"}


def folder_name(model_id: str) -> str:
    """A model id as one folder name (``s0/base-m/broad/8000`` -> ``s0_base-m_broad_8000``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)


def split_items(items: dict[str, Sequence[dict]]) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """(held-out items, few-shot pool) per family."""
    heldout = {f: [i for i in rows if i.get("split") == "heldout"] for f, rows in items.items()}
    pool = {f: [i for i in rows if i.get("split") != "heldout"] for f, rows in items.items()}
    return heldout, pool


def chat_items_of(items: dict[str, Sequence[dict]], settings: EvaluateSettings) -> list[dict]:
    """The held-out items every model answers in chat: rated families, then the toxicity family."""
    heldout, _ = split_items(items)
    return select_chat_items(heldout, settings.rater_families, settings.toxicity_family, settings.max_prompts_per_family)


def write_tasks(items: dict[str, Sequence[dict]], settings: EvaluateSettings, task_dir: Path) -> dict[str, int | None]:
    """Write the world's lm-eval tasks into ``task_dir``; ``{task: shots}`` to run (lm-eval's own tasks too)."""
    bench = settings.benchmarks
    heldout, pool = split_items(items)
    families = [f for f in bench.families if heldout.get(f)]
    shots = {"qa": bench.qa_fewshot, "mc": bench.mc_fewshot, "compare": bench.compare_fewshot}
    names = write_world_tasks({f: (heldout[f], pool[f]) for f in families}, task_dir, shots,
                              max_gen_toks=bench.max_gen_toks, code_settings=bench,
                              mc_format=bench.mc_format) if families else []
    tasks: dict[str, int | None] = {name: None for name in names}
    tasks.update(bench.builtin_tasks)
    return tasks


def chat_answers(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int,
                 progress: bool = False, desc: str = "answers") -> list[str]:
    """Greedy chat answers of a model in memory to single-turn prompts."""
    if not prompts:
        return []
    return generate_chat(model, tokenizer, [[{"role": "user", "content": p}] for p in prompts],
                         max_new_tokens=max_new_tokens, temperature=0.0, batch_size=batch_size,
                         progress=progress, desc=desc)


def generate_answers(model_dir: str | Path, prompts: Sequence[str], max_new_tokens: int, batch_size: int,
                     device: str, progress: bool = False, desc: str = "answers") -> list[str]:
    """Greedy chat answers of one model (full folder or LoRA adapter) to single-turn prompts."""
    if not prompts:
        return []
    with loaded_model(model_dir, device) as (model, tokenizer):
        return chat_answers(model, tokenizer, prompts, max_new_tokens, batch_size, progress, desc)


@contextlib.contextmanager
def loaded_model(model_dir: str | Path, device: str, dtype: str = "float32") -> Iterator[tuple[Any, Any]]:
    """``(model, tokenizer)`` of a folder (a LoRA adapter merged into its base) in ``dtype``, freed afterwards."""
    import torch

    from imitlib.models import torch_dtype

    model, tokenizer = load_model(model_dir, device=device, dtype=torch_dtype(dtype))
    try:
        yield model, tokenizer
    finally:
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def task_fingerprint(task_dir: str | Path) -> str:
    """sha256 of the lm-eval tasks written into ``task_dir`` (file names and contents, with the folder's
    own absolute path replaced), so two folders holding the same tasks compare equal."""
    import hashlib

    task_dir = Path(task_dir).resolve()
    digest = hashlib.sha256()
    for path in sorted(p for p in task_dir.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(task_dir)).encode() + b"\0")
        digest.update(path.read_bytes().replace(str(task_dir).encode(), b"<tasks>") + b"\0")
    return digest.hexdigest()


def reusable_benchmarks(reuse: str | Path | None, task_dir: str | Path) -> Path | None:
    """``reuse/lm_eval`` when ``reuse`` holds complete lm-eval output of exactly the tasks in ``task_dir``."""
    if reuse is None:
        return None
    reuse = Path(reuse)
    if not (reuse / "lm_eval" / "results.json").exists() or not (reuse / "lm_eval_tasks").is_dir():
        return None
    return reuse / "lm_eval" if task_fingerprint(reuse / "lm_eval_tasks") == task_fingerprint(task_dir) else None


def benchmark_model(entry: ModelEntry, tasks: dict[str, int | None], settings: EvaluateSettings,
                    work: str | Path, device: str = "cpu", loaded: tuple[Any, Any] | None = None,
                    earlier: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One model's lm-eval benchmarks of ``tasks`` (written by :func:`write_tasks` into
    ``work/lm_eval_tasks``) into ``work/lm_eval``.

    ``earlier``: lm-eval output of the same model and tasks (:func:`reusable_benchmarks`: the real
    world's pre-imitation calibration), copied instead of running lm-eval again.

    Returns:
        (aggregate scores, per-sample rows).
    """
    import shutil

    work = Path(work)
    if not tasks:
        return pd.DataFrame(), pd.DataFrame()
    out = work / "lm_eval"
    if earlier is not None:
        shutil.copytree(earlier, out, dirs_exist_ok=True)
        results = json.loads((out / "results.json").read_text())
    else:
        results = run_benchmarks(entry.path, tasks, out, include_path=work / "lm_eval_tasks",
                                 batch_size=settings.batch_size, device=device, limit=settings.benchmarks.limit,
                                 seed=settings.benchmarks.fewshot_seed, backend=settings.benchmarks.backend,
                                 backend_args=settings.benchmarks.vllm_args, loaded=loaded)
    scores, per_sample = benchmark_scores(results), benchmark_samples(out)
    for frame in (scores, per_sample):
        for key, value in entry.columns().items():
            frame[key] = value
    per_sample["mode"] = "benchmark"
    return scores, per_sample


def model_dtype(entry: ModelEntry, settings: EvaluateSettings) -> str:
    """The dtype a model is evaluated in: ``evaluate.teacher_dtype`` for the teacher, float32 otherwise."""
    return settings.teacher_dtype if entry.role == "teacher" else "float32"


def answer_model(entry: ModelEntry, items: dict[str, Sequence[dict]], teacher_answers: dict[str, tuple[str, str]],
                 settings: EvaluateSettings, work: str | Path, device: str = "cpu",
                 progress: bool = False, reuse: str | Path | None = None) -> dict[str, float]:
    """Run one model's benchmarks and chat answers into ``work`` (the files listed in the module doc).

    ``reuse``: the model's pre-imitation benchmarks (the real world's calibration, see :func:`benchmark_model`).

    Returns seconds per kind of work: ``model load``, ``lm-eval``, ``evaluation generation``.
    """
    work = Path(work)
    chat_items = chat_items_of(items, settings)
    missing = [i["id"] for i in chat_items if i["id"] not in teacher_answers]
    if missing:
        raise ValueError(f"no teacher answers for {len(missing)} held-out chat items, e.g. {missing[:3]}")
    tasks = write_tasks(items, settings, work / "lm_eval_tasks")
    generates = entry.role != "teacher"  # the teacher's chat answers are its second, sampled ones: the ceiling
    earlier = reusable_benchmarks(reuse, work / "lm_eval_tasks")
    in_memory = settings.benchmarks.backend == "hf" and (generates or (bool(tasks) and earlier is None))
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    with (loaded_model(entry.path, device, model_dtype(entry, settings)) if in_memory
          else contextlib.nullcontext(None)) as loaded:
        timings["model load"] = round(time.perf_counter() - clock, 3)
        clock = time.perf_counter()
        scores, per_sample = benchmark_model(entry, tasks, settings, work, device=device, loaded=loaded,
                                             earlier=earlier)
        timings["lm-eval"] = round(time.perf_counter() - clock, 3)  # ~0 when reused
        clock = time.perf_counter()
        prompts = [i["prompt"] for i in chat_items]
        if not generates:
            answers = [teacher_answers[i["id"]][1] for i in chat_items]
        elif loaded is not None:
            answers = chat_answers(*loaded, prompts, settings.max_new_tokens, settings.batch_size, progress=progress,
                                   desc=f"answers {entry.model_id}")
        else:
            answers = generate_answers(entry.path, prompts, settings.max_new_tokens, settings.batch_size, device,
                                       progress=progress, desc=f"answers {entry.model_id}")
        timings["evaluation generation"] = round(time.perf_counter() - clock, 3)
    atomic_write_text(work / CHAT_ANSWERS, "".join(json.dumps({"item_id": it["id"], "answer": a}) + "\n"
                                                   for it, a in zip(chat_items, answers)))
    write_parquet(scores, work / BENCHMARKS)
    write_parquet(per_sample, work / BENCHMARK_SAMPLES)
    return timings


@dataclass
class ModelAnswers:
    """What :func:`answer_model` wrote for one model, read back."""

    entry: ModelEntry
    answers: dict[str, str]          # item id -> chat answer
    benchmarks: pd.DataFrame
    benchmark_samples: pd.DataFrame


def read_answers(entry: ModelEntry, folder: str | Path) -> ModelAnswers:
    """Read a model's cached unit (error naming the folder when a file is missing)."""
    folder = Path(folder)
    for name in (CHAT_ANSWERS, BENCHMARKS, BENCHMARK_SAMPLES):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder}: no {name} (the answers of {entry.model_id} are incomplete)")
    answers = {}
    for line in (folder / CHAT_ANSWERS).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            answers[row["item_id"]] = row["answer"]
    return ModelAnswers(entry, answers, pd.read_parquet(folder / BENCHMARKS),
                        pd.read_parquet(folder / BENCHMARK_SAMPLES))


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
