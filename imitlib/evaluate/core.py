"""Evaluate a set of models: lm-eval benchmarks, chat answers rated vs the teacher, toxicity → tidy tables.

:func:`evaluate_models` takes everything explicitly (models, task items, ground truth, teacher
answers), so it runs the same on the miniature world, the real tracks and test fixtures.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from imitlib.evaluate.benchmarks import benchmark_samples, benchmark_scores, run_benchmarks, write_world_tasks
from imitlib.evaluate.raters import FactRater, LLMJudge, StyleRater, rate_vs_reference
from imitlib.evaluate.style import StylePreferenceModel
from imitlib.evaluate.toxicity import toxicity_scores
from imitlib.settings.evaluate import EvaluateSettings
from imitlib.stages import atomic_write_json, atomic_write_text

SAMPLE_COLUMNS = [
    "model_id", "seed", "role", "base_model", "base_params", "data_kind", "imitation_tokens", "task", "mode",
    "item_id", "prompt", "reference", "answer", "teacher_answer", "teacher_answer_2", "correct",
    "pref_style", "pref_fact", "pref_llm", "toxicity",
]


@dataclass
class ModelEntry:
    """One model to evaluate and what it is."""

    model_id: str
    path: str
    role: str                 # base | imitation | teacher
    base_model: str
    base_params: int
    data_kind: str = "none"   # none | broad | task
    imitation_tokens: int = 0
    seed: int = 0


def _folder_name(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)


def _normalise(text: str) -> str:
    text = re.sub(r"[^\w\s]", " ", str(text).lower())
    text = re.sub(r"\b(?:the|a|an)\b", " ", text)
    return " ".join(text.split())


def mentions_answer(answer: str, reference: str) -> float:
    """1.0 when the normalised reference appears as whole words in the normalised answer."""
    ref = _normalise(reference)
    if not ref:
        return math.nan
    return float(re.search(r"(?<!\w)" + re.escape(ref) + r"(?!\w)", _normalise(answer)) is not None)


def generate_answers(model_dir: str | Path, prompts: Sequence[str], max_new_tokens: int, batch_size: int,
                     device: str, progress: bool = False, desc: str = "answers") -> list[str]:
    """Greedy chat answers of one model (full folder or LoRA adapter) to single-turn prompts."""
    import torch

    from imitlib.generation import generate_chat
    from imitlib.models import load_model

    if not prompts:
        return []
    model, tokenizer = load_model(model_dir, device=device)
    try:
        return generate_chat(model, tokenizer, [[{"role": "user", "content": p}] for p in prompts],
                             max_new_tokens=max_new_tokens, temperature=0.0, batch_size=batch_size,
                             progress=progress, desc=desc)
    finally:
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def fit_style_rater(fit_prompts: Sequence[str], teacher_answers: Sequence[str], base_answers: dict[str, Sequence[str]],
                    settings: EvaluateSettings, seed: int = 0) -> StyleRater:
    """Fit the crowdworker stand-in on (teacher answer preferred over base answer) pairs."""
    preferred, other = [], []
    for answers in base_answers.values():
        for teacher, base in zip(teacher_answers, answers):
            preferred.append(teacher)
            other.append(base)
    model = StylePreferenceModel(regularization_c=settings.style_rater.regularization_c,
                                 lexical_features=settings.style_rater.lexical_features)
    model.fit(preferred, other, seed=seed)
    model.fit_report["fit_prompts"] = len(fit_prompts)
    model.fit_report["base_models"] = sorted(base_answers)
    return StyleRater(model, tie_margin=settings.style_rater.tie_margin)


@contextlib.contextmanager
def judge_for(settings: EvaluateSettings, teacher_dir: str | Path | None, seed: int) -> Iterator[LLMJudge | None]:
    """The configured LLM judge (the teacher served on loopback, or a URL), or None."""
    judge = settings.judge
    if judge.endpoint == "none":
        yield None
        return
    if judge.endpoint == "url":
        if not judge.base_url:
            raise ValueError("evaluate.judge.endpoint is 'url' but evaluate.judge.base_url is not set")
        key = os.environ.get(judge.api_key_env, "unused")
        yield LLMJudge(base_url=judge.base_url, model=judge.model, api_key=key, temperature=judge.temperature,
                       max_tokens=judge.max_tokens, seed=seed)
        return
    from imitlib.teacher.server import served_teacher

    if teacher_dir is None:
        raise ValueError("evaluate.judge.endpoint is 'teacher' but no teacher model folder was given")
    with served_teacher(teacher_dir, model_name=judge.model) as endpoint:
        yield LLMJudge(base_url=endpoint.base_url, model=endpoint.model, temperature=judge.temperature,
                       max_tokens=judge.max_tokens, seed=seed)


def evaluate_models(
    models: Sequence[ModelEntry],
    items: dict[str, Sequence[dict]],
    ground_truth: dict,
    teacher_answers: dict[str, tuple[str, str]],
    style_fit: tuple[Sequence[str], Sequence[str]],
    settings: EvaluateSettings,
    work: str | Path,
    teacher_dir: str | Path | None = None,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate every model; write results under ``work`` and return (samples, benchmarks) tables.

    Args:
        models: the models (base, imitation, teacher).
        items: ``{family: task items of both splits}``.
        ground_truth: lookup for the fact-checking rater.
        teacher_answers: ``{item_id: (teacher answer, second sampled teacher answer)}`` for held-out
            chat items.
        style_fit: (prompts, teacher answers) from the imitation split, to fit the style rater.
        settings: the ``evaluate`` params.
        work: stage folder to write into.
        teacher_dir: teacher folder (serves as the LLM judge when ``judge.endpoint == "teacher"``).
        device: torch device.
        seed: replicate seed.
        progress: progress bars.

    Writes ``lm_eval/<model>/results.json`` + ``samples_*.jsonl``, ``chat_answers.jsonl``,
    ``style_rater.json``, ``judge.json``/``judge_log.jsonl``, ``samples.parquet``, ``benchmarks.parquet``.
    """
    work = Path(work)
    bench = settings.benchmarks
    heldout = {f: [i for i in rows if i.get("split") == "heldout"] for f, rows in items.items()}
    pool = {f: [i for i in rows if i.get("split") != "heldout"] for f, rows in items.items()}

    # ---- lm-eval benchmarks -----------------------------------------------------------------------
    families = [f for f in bench.families if heldout.get(f)]
    shots = {"qa": bench.qa_fewshot, "mc": bench.mc_fewshot, "compare": bench.compare_fewshot}
    task_dir = work / "lm_eval_tasks"
    task_names = write_world_tasks({f: (heldout[f], pool[f]) for f in families}, task_dir, shots,
                                   max_gen_toks=bench.max_gen_toks, code_settings=bench) if families else []
    tasks: dict[str, int | None] = {name: None for name in task_names}
    tasks.update(bench.builtin_tasks)
    bench_frames, bench_samples = [], []
    for entry in tqdm(models, desc="lm-eval", disable=not progress):
        if not tasks:
            break
        out = work / "lm_eval" / _folder_name(entry.model_id)
        results = run_benchmarks(entry.path, tasks, out, include_path=task_dir, batch_size=settings.batch_size,
                                 device=device, limit=bench.limit, seed=bench.fewshot_seed)
        scores = benchmark_scores(results)
        per_sample = benchmark_samples(out)
        for frame in (scores, per_sample):
            for key, value in asdict(entry).items():
                if key != "path":
                    frame[key] = value
        bench_frames.append(scores)
        per_sample["mode"] = "benchmark"
        bench_samples.append(per_sample)

    # ---- chat answers to held-out prompts -----------------------------------------------------------
    chat_families = list(dict.fromkeys([*settings.rater_families, settings.toxicity_family]))
    chat_items = []
    for family in chat_families:
        rows = heldout.get(family, [])
        if settings.max_prompts_per_family is not None:
            rows = rows[: settings.max_prompts_per_family]
        chat_items.extend(rows)
    missing = [i["id"] for i in chat_items if i["id"] not in teacher_answers]
    if missing:
        raise ValueError(f"no teacher answers for {len(missing)} held-out chat items, e.g. {missing[:3]}")
    prompts = [i["prompt"] for i in chat_items]
    answers: dict[str, list[str]] = {}
    for entry in tqdm(models, desc="chat answers", disable=not progress):
        if entry.role == "teacher":
            answers[entry.model_id] = [teacher_answers[i["id"]][1] for i in chat_items]
        else:
            answers[entry.model_id] = generate_answers(entry.path, prompts, settings.max_new_tokens,
                                                       settings.batch_size, device)
    atomic_write_text(work / "chat_answers.jsonl", "".join(
        json.dumps({"model_id": m, "item_id": it["id"], "answer": a}) + "\n"
        for m, texts in answers.items() for it, a in zip(chat_items, texts)))

    # ---- raters --------------------------------------------------------------------------------------
    fit_prompts, fit_teacher = style_fit
    base_fit = {e.model_id: generate_answers(e.path, list(fit_prompts), settings.max_new_tokens, settings.batch_size, device)
                for e in models if e.role == "base"}
    style = fit_style_rater(fit_prompts, fit_teacher, base_fit, settings, seed=seed)
    atomic_write_json(work / "style_rater.json", style.model.to_dict())
    fact = FactRater(ground_truth)
    rated_mask = [i["family"] in settings.rater_families for i in chat_items]
    rated_items = [it for it, keep in zip(chat_items, rated_mask) if keep]
    rated_prompts = [it["prompt"] for it in rated_items]
    rated_refs = [teacher_answers[it["id"]][0] for it in rated_items]
    toxic_mask = [i["family"] == settings.toxicity_family for i in chat_items]

    rows = []
    with judge_for(settings, teacher_dir, seed) as judge:
        for entry in tqdm(models, desc="raters", disable=not progress):
            texts = answers[entry.model_id]
            rated_texts = [t for t, keep in zip(texts, rated_mask) if keep]
            style_scores = rate_vs_reference(style, rated_prompts, rated_texts, rated_refs).scores
            fact_scores = rate_vs_reference(fact, rated_prompts, rated_texts, rated_refs).scores
            llm_scores = [math.nan] * len(rated_texts)
            if judge is not None:
                limit = settings.judge.max_prompts or len(rated_texts)
                llm_scores[:limit] = rate_vs_reference(judge, rated_prompts[:limit], rated_texts[:limit],
                                                       rated_refs[:limit]).scores
            by_item = {it["id"]: (s, f, l) for it, s, f, l in zip(rated_items, style_scores, fact_scores, llm_scores)}
            tox = dict(zip([it["id"] for it, k in zip(chat_items, toxic_mask) if k],
                           toxicity_scores([t for t, k in zip(texts, toxic_mask) if k])))
            for it, text in zip(chat_items, texts):
                s, f, l = by_item.get(it["id"], (math.nan, math.nan, math.nan))
                reference = it.get("answer")
                rows.append({
                    **{k: v for k, v in asdict(entry).items() if k != "path"},
                    "task": it["family"], "mode": "chat", "item_id": it["id"], "prompt": it["prompt"],
                    "reference": "" if reference is None else str(reference), "answer": text,
                    "teacher_answer": teacher_answers[it["id"]][0], "teacher_answer_2": teacher_answers[it["id"]][1],
                    "correct": mentions_answer(text, reference) if it["family"] in ("qa", "compare") and reference else math.nan,
                    "pref_style": s, "pref_fact": f, "pref_llm": l, "toxicity": tox.get(it["id"], math.nan),
                })
        judge_record = {"endpoint": settings.judge.endpoint}
        if judge is not None:
            judge_record.update(judge.record(), unparsed_share=judge.unparsed_share, replies=len(judge.log))
            atomic_write_text(work / "judge_log.jsonl", "".join(json.dumps(e) + "\n" for e in judge.log))
        atomic_write_json(work / "judge.json", judge_record)

    chat = pd.DataFrame(rows)
    samples = pd.concat([*bench_samples, chat], ignore_index=True) if bench_samples else chat
    for column in SAMPLE_COLUMNS:
        if column not in samples:
            samples[column] = math.nan if column in ("correct", "pref_style", "pref_fact", "pref_llm", "toxicity") else ""
    samples = samples[SAMPLE_COLUMNS + [c for c in samples.columns if c not in SAMPLE_COLUMNS]]
    benchmarks = pd.concat(bench_frames, ignore_index=True) if bench_frames else pd.DataFrame()
    _write_parquet(samples, work / "samples.parquet")
    _write_parquet(benchmarks, work / "benchmarks.parquet")
    return samples, benchmarks


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    from imitlib.stages import atomic_path

    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
