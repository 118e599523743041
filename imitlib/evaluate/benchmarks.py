"""Benchmarks through lm-eval: the world's task families as lm-eval tasks, and lm-eval's own tasks.

Families: ``qa`` (exact match), ``mc`` (loglikelihood), ``compare`` (exact match) and, on the real
tracks, ``code`` (HumanEval pass@1, every completion run in :mod:`imitlib.real.sandbox`).

The task templates ship in ``imitlib/evaluate/tasks/<family>.yaml``. :func:`write_world_tasks`
writes, into a folder of the stage, one data file per task (held-out items as ``test``, other
items as the few-shot pool ``train``) and a task YAML with absolute ``data_files`` (lm-eval
resolves relative ones against the working directory). :func:`run_benchmarks` evaluates one model
(a full folder, or a LoRA adapter through ``peft=``) with a fixed batch size, and keeps the
results JSON and every logged sample.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import yaml

from imitlib.stages import atomic_write_json, atomic_write_text

TEMPLATE_DIR = Path(__file__).resolve().parent / "tasks"
TASK_PREFIX = "imitlib_"
TASK_FIELDS = ("id", "family", "individual", "attribute", "prompt", "question", "answer", "choices", "gold")
CODE_FIELDS = ("test", "entry_point")  # code items also keep how to check a completion
CODE_HOOK_MODULE = "imitlib_code_sandbox"
MC_TEMPLATES = {"cloze": "mc", "letters": "mc_letters"}  # evaluate.benchmarks.mc_format -> template


def task_template(family: str) -> dict[str, Any]:
    """The shipped lm-eval config of a world task family."""
    path = TEMPLATE_DIR / f"{family}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in TEMPLATE_DIR.glob("*.yaml"))
        raise ValueError(f"no lm-eval template for task family {family!r} (templates: {known})")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _clean_item(item: dict, family: str) -> dict:
    row = {key: item.get(key) for key in TASK_FIELDS}
    row["family"] = family
    row["answer"] = "" if row["answer"] is None else str(row["answer"])
    row["question"] = str(row["question"] or row["prompt"])  # the bare question, where the prompt lists options
    if family == "code":
        missing = [key for key in CODE_FIELDS if not item.get(key)]
        if missing:
            raise ValueError(f"code item {item.get('id')!r} needs {missing} to check completions")
        row.update({key: str(item[key]) for key in CODE_FIELDS})
    if family == "mc":
        if not isinstance(row["choices"], list) or not isinstance(row["gold"], int):
            raise ValueError(f"multiple-choice item {item.get('id')!r} needs a list 'choices' and an int 'gold'")
        row["choices"] = [str(c) for c in row["choices"]]
    else:
        row["choices"] = []
        row["gold"] = -1
    return row


def write_world_tasks(
    items: dict[str, tuple[Sequence[dict], Sequence[dict]]],
    folder: str | Path,
    num_fewshot: dict[str, int],
    max_gen_toks: int = 16,
    code_settings: Any = None,
    mc_format: str = "cloze",
) -> list[str]:
    """Write lm-eval task YAMLs and their data files for the world's task families.

    Args:
        items: ``{family: (held-out items, few-shot pool items)}`` in the task-item format.
        folder: where to write (becomes the TaskManager include path).
        num_fewshot: shots per family.
        max_gen_toks: generation cap of generative tasks (``code``: ``code_settings.code_max_gen_toks``).
        code_settings: ``evaluate.benchmarks`` settings (``code_max_gen_toks``, ``code_timeout_s``,
            ``code_memory_mb``) of the ``code`` family; default: the schema's defaults.
        mc_format: ``cloze`` (template ``mc.yaml``) or ``letters`` (``mc_letters.yaml``, MMLU's format).

    Returns:
        The task names (``imitlib_<family>``).
    """
    if mc_format not in MC_TEMPLATES:
        raise ValueError(f"mc_format {mc_format!r} is not one of {sorted(MC_TEMPLATES)}")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    fewshot: dict[str, dict[str, list]] = {}
    for family, (heldout, pool) in items.items():
        if not heldout:
            raise ValueError(f"task family {family!r} has no held-out items to evaluate")
        shots = num_fewshot.get(family, 0)
        if len(pool) < shots:
            raise ValueError(f"task family {family!r}: {shots} shots need a few-shot pool of {shots}, got {len(pool)}")
        demos, heldout, dropped = fewshot_demonstrations(family, pool, heldout, shots)
        fewshot[family] = {"demonstrations": [d.get("id") for d in demos], "dropped_test_items": dropped}
        if not heldout:
            raise ValueError(f"task family {family!r}: every held-out item asks a fact its demonstrations state")
        files = {}
        for split, rows in (("test", heldout), ("train", demos if shots else pool)):
            path = folder / f"{family}_{split}.jsonl"
            text = "".join(json.dumps(_clean_item(r, family), ensure_ascii=False) + "\n" for r in rows)
            atomic_write_text(path, text)
            files[split] = str(path)
        config = task_template(MC_TEMPLATES[mc_format] if family == "mc" else family)
        name = TASK_PREFIX + family
        config.update({"task": name, "num_fewshot": shots,
                       "dataset_kwargs": {"data_files": files}})
        if "generation_kwargs" in config:
            config["generation_kwargs"]["max_gen_toks"] = max_gen_toks
        if pool:
            config["fewshot_split"] = "train"
            config["fewshot_config"] = {"sampler": "first_n"}  # the same demonstrations for every question
        else:
            config.pop("training_split", None)
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        if family == "code":
            text = _code_task(folder, config, code_settings)
        atomic_write_text(folder / f"{name}.yaml", text)
        names.append(name)
    atomic_write_json(folder / "fewshot.json", fewshot)
    return names


def fewshot_demonstrations(family: str, pool: Sequence[dict], heldout: Sequence[dict],
                           shots: int) -> tuple[list[dict], list[dict], list[str]]:
    """The fixed demonstrations of a family and the held-out items left to ask.

    The demonstrations are ``shots`` pool items drawn with a seed named after the family (the same
    for every model and every run). The pool covers every individual, so a demonstration states a
    fact (individual, attribute) the evaluation asks too; the held-out items asking a demonstrated
    fact are left out, so no question is answered by its own prompt. Items without an individual and
    an attribute (the real tracks' questions) are never left out.

    Returns:
        (demonstrations, held-out items to ask, ids of the held-out items left out).
    """
    if shots <= 0 or not pool:
        return [], list(heldout), []
    demos = random.Random(f"imitlib-fewshot-{family}").sample(list(pool), shots)
    stated = {(d.get("individual"), d.get("attribute")) for d in demos if d.get("individual") and d.get("attribute")}
    kept = [r for r in heldout if (r.get("individual"), r.get("attribute")) not in stated]
    dropped = [str(r.get("id")) for r in heldout if (r.get("individual"), r.get("attribute")) in stated]
    return demos, kept, dropped


def _code_task(folder: Path, config: dict[str, Any], code_settings: Any) -> str:
    """The ``code`` task's YAML text, and the module beside it whose hook checks completions in the sandbox.

    lm-eval loads ``!function module.name`` from a ``module.py`` next to the YAML file; the module
    only builds the hook of :mod:`imitlib.real.code_eval` with the configured limits.
    """
    if code_settings is None:
        from imitlib.settings.evaluate import BenchmarkSettings

        code_settings = BenchmarkSettings()
    config["generation_kwargs"]["max_gen_toks"] = int(code_settings.code_max_gen_toks)
    hook = (f'"""lm-eval hook of the imitlib_code task (written by imitlib.evaluate.benchmarks)."""\n'
            f"from imitlib.real.code_eval import make_process_results\n\n"
            f"process_results = make_process_results(timeout_s={float(code_settings.code_timeout_s)!r}, "
            f"cpu_s={int(math.ceil(code_settings.code_timeout_s))}, memory_mb={int(code_settings.code_memory_mb)})\n")
    atomic_write_text(folder / f"{CODE_HOOK_MODULE}.py", hook)
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    return text + f"process_results: !function {CODE_HOOK_MODULE}.process_results\n"


def model_args_for(model_dir: str | Path, dtype: str = "float32", backend: str = "hf",
                   extra: dict[str, Any] | None = None) -> str:
    """lm-eval ``model_args`` for a model folder; a LoRA adapter folder loads its base with ``peft=``
    (backend ``hf``) or ``lora_local_path=`` (backend ``vllm``, whose dtype is ``auto`` unless ``extra``
    sets one). ``extra`` (``evaluate.benchmarks.vllm_args``) is appended in key order."""
    model_dir = Path(model_dir)
    extra = dict(extra or {})
    if backend == "vllm":
        dtype = str(extra.pop("dtype", "auto"))
    elif extra:
        raise ValueError(f"extra model_args are for the vllm backend only, got {sorted(extra)} with {backend!r}")
    adapter = model_dir / "adapter_config.json"
    if adapter.exists():
        base = json.loads(adapter.read_text())["base_model_name_or_path"]
        tokenizer = model_dir if (model_dir / "tokenizer_config.json").exists() else base
        load = "lora_local_path" if backend == "vllm" else "peft"
        args = f"pretrained={base},{load}={model_dir},tokenizer={tokenizer},dtype={dtype}"
    else:
        args = f"pretrained={model_dir},dtype={dtype}"
    return args + "".join(f",{key}={extra[key]}" for key in sorted(extra))


def require_vllm() -> None:
    """lm-eval's vllm backend can run here: the ``vllm`` package and a CUDA GPU (else RuntimeError)."""
    import importlib.util

    import torch

    if importlib.util.find_spec("vllm") is None:
        raise RuntimeError("evaluate.benchmarks.backend 'vllm' needs the vllm package (pip install vllm, on a CUDA "
                           "machine; it is not among the pinned dependencies); or use backend hf")
    if not torch.cuda.is_available():
        raise RuntimeError("evaluate.benchmarks.backend 'vllm' runs on CUDA GPUs only, and none is visible; "
                           "use backend hf")


def run_benchmarks(
    model_dir: str | Path,
    tasks: dict[str, int | None],
    out_dir: str | Path,
    include_path: str | Path | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    limit: int | None = None,
    seed: int = 1234,
    backend: str = "hf",
    backend_args: dict[str, Any] | None = None,
    loaded: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate one model with lm-eval and save ``results.json`` and ``samples_<task>.jsonl``.

    Args:
        model_dir: full model folder or LoRA adapter folder.
        tasks: ``{task name: shots}``; ``None`` keeps the shots written in the task's YAML.
        out_dir: where results go.
        include_path: folder of task YAMLs written by :func:`write_world_tasks`.
        batch_size: fixed batch size (recorded; scores move with padding otherwise).
        device: torch device string.
        limit: items per task (None: all).
        seed: lm-eval's random and few-shot seeds.
        backend: lm-eval's model backend, ``hf`` or ``vllm`` (checked with :func:`require_vllm` first).
        backend_args: extra model_args of the vllm backend (``evaluate.benchmarks.vllm_args``).
        loaded: ``(model, tokenizer)`` of ``model_dir`` already in memory (backend ``hf``): lm-eval
            evaluates it instead of loading the folder again.

    Returns:
        The results JSON (without samples).
    """
    import lm_eval
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import handle_non_serializable

    if backend == "vllm":
        require_vllm()
    out_dir = Path(out_dir)
    world_only = all(name.startswith(TASK_PREFIX) for name in tasks)
    # Indexing lm-eval's thousands of built-in task files is slow; skip it when none is asked for.
    task_manager = TaskManager(include_path=str(include_path) if include_path else None,
                               include_defaults=not world_only)
    by_shots: dict[int | None, list[str]] = {}
    for name, shots in tasks.items():
        by_shots.setdefault(shots, []).append(name)
    merged: dict[str, Any] = {"results": {}, "configs": {}, "n-samples": {}, "versions": {}, "n-shot": {},
                              "higher_is_better": {}}
    samples: dict[str, list] = {}
    if loaded is not None and backend != "hf":
        raise ValueError(f"a model in memory runs on lm-eval's hf backend, not {backend!r}")
    if loaded is not None:
        from lm_eval.models.huggingface import HFLM

        model_spec: Any = HFLM(pretrained=loaded[0], tokenizer=loaded[1], batch_size=batch_size)
        model_args = None
    else:
        model_spec, model_args = backend, model_args_for(model_dir, backend=backend, extra=backend_args)
    for shots, names in by_shots.items():
        output = lm_eval.simple_evaluate(
            model=model_spec, model_args=model_args,
            tasks=names, num_fewshot=shots,
            batch_size=batch_size, device=device, limit=limit, log_samples=True, task_manager=task_manager,
            random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
            # code benchmarks (humaneval) execute the model's programs; only lm-eval's own tasks do
            confirm_run_unsafe_code=any("humaneval" in name for name in names),
        )
        for key in merged:
            merged[key].update(output.get(key, {}))
        samples.update(output.get("samples", {}))
        merged["config"] = output.get("config", {})
    merged["model_dir"] = str(model_dir)
    merged["backend"] = backend
    merged["batch_size"] = batch_size
    merged["device"] = device
    merged["limit"] = limit
    merged["seed"] = seed
    merged["lm_eval_version"] = lm_eval.__version__
    for name, rows in samples.items():
        text = "".join(json.dumps(row, default=handle_non_serializable, ensure_ascii=False) + "\n" for row in rows)
        atomic_write_text(out_dir / f"samples_{name}.jsonl", text)
    atomic_write_json(out_dir / "results.json", json.loads(json.dumps(merged, default=handle_non_serializable)))
    return merged


def _metric(row: dict, names: Sequence[str]) -> float:
    for name in names:
        if name in row:
            return float(row[name])
    return math.nan


def benchmark_samples(out_dir: str | Path) -> pd.DataFrame:
    """Per-sample rows from saved lm-eval samples: task, item_id, prompt, reference, answer, correct."""
    rows = []
    for path in sorted(Path(out_dir).glob("samples_*.jsonl")):
        task = path.stem[len("samples_"):]
        family = task[len(TASK_PREFIX):] if task.startswith(TASK_PREFIX) else task
        for line in path.read_text(encoding="utf-8").splitlines():
            sample = json.loads(line)
            doc = sample["doc"]
            if "choices" in doc and doc.get("choices"):
                loglik = [resp[0][0] if isinstance(resp[0], (list, tuple)) else resp[0] for resp in sample["filtered_resps"]]
                best = max(range(len(loglik)), key=lambda i: float(loglik[i]))
                answer = str(doc["choices"][best])
                reference = str(doc["choices"][int(doc["gold"])])
            else:
                filtered = sample["filtered_resps"][0]
                answer = filtered if isinstance(filtered, str) else str(filtered[0] if filtered else "")
                reference = str(sample.get("target", doc.get("answer", "")))
            rows.append({
                "task": family, "item_id": str(doc.get("id", sample["doc_id"])),
                "prompt": str(doc.get("prompt", sample["arguments"][0][0])),
                "reference": reference, "answer": answer,
                "correct": _metric(sample, ("exact_match", "acc", "pass@1", "pass_at_1")),
            })
    return pd.DataFrame(rows)


def benchmark_scores(results: dict[str, Any]) -> pd.DataFrame:
    """Aggregate scores from a results JSON: one row per (task, metric) with its stderr."""
    rows = []
    for task, metrics in results.get("results", {}).items():
        for key, value in metrics.items():
            if not isinstance(value, (int, float)) or "_stderr" in key or key in ("alias", "sample_len"):
                continue
            metric, _, filter_name = key.partition(",")
            stderr = metrics.get(f"{metric}_stderr,{filter_name}")
            family = task[len(TASK_PREFIX):] if task.startswith(TASK_PREFIX) else task
            rows.append({
                "task": family, "metric": metric, "filter": filter_name, "value": float(value),
                "stderr": float(stderr) if isinstance(stderr, (int, float)) else math.nan,
                "n_samples": results.get("n-samples", {}).get(task, {}).get("effective", math.nan),
                "num_fewshot": results.get("n-shot", {}).get(task, math.nan),
                "batch_size": results.get("batch_size"),
            })
    return pd.DataFrame(rows)
