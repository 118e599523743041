"""Rate models' cached answers against the teacher, toxicity → the tidy per-sample and benchmark tables.

Each model's benchmarks and chat answers are its own cached unit (:mod:`imitlib.evaluate.answers`);
:func:`rate_answers` reads them and rates; :func:`evaluate_models` does both in one folder. Both take
everything explicitly (models, task items, ground truth, teacher answers), so they run the same on
the miniature world, the real tracks and test fixtures.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd
from tqdm.auto import tqdm

from imitlib.evaluate.answers import (ModelAnswers, ModelEntry, answer_model, chat_items_of, folder_name,  # noqa: F401
                                      generate_answers, read_answers, write_parquet)
from imitlib.evaluate.raters import JudgeTally, LLMJudge, question_of, rate_vs_reference, rater_panel
from imitlib.evaluate.scorers import majority_baseline, mentions_answer, score_chat_answer  # noqa: F401 (re-exported)
from imitlib.evaluate.toxicity import toxicity_scores
from imitlib.settings.evaluate import EvaluateSettings
from imitlib.stages import atomic_write_json, atomic_write_text

SAMPLE_COLUMNS = [
    "model_id", "seed", "role", "base_model", "base_params", "data_kind", "imitation_tokens", "task", "mode",
    "item_id", "prompt", "reference", "answer", "teacher_answer", "teacher_answer_2", "correct",
    "pref_style", "pref_fact", "pref_llm", "toxicity",
]


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
    with served_teacher(teacher_dir, model_name=judge.model, dtype=settings.teacher_dtype) as endpoint:
        yield LLMJudge(base_url=endpoint.base_url, model=endpoint.model, temperature=judge.temperature,
                       max_tokens=judge.max_tokens, seed=seed)


def evaluate_models(
    models: Sequence[ModelEntry],
    items: dict[str, Sequence[dict]],
    ground_truth: dict,
    teacher_answers: dict[str, tuple[str, str]],
    settings: EvaluateSettings,
    work: str | Path,
    teacher_dir: str | Path | None = None,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Answer with every model (:func:`imitlib.evaluate.answers.answer_model`, into ``work/models/<model>``),
    then rate the answers (:func:`rate_answers`); returns (samples, benchmarks).

    The study's stage caches each model's answers as its own unit instead (:mod:`imitlib.study.evaluate`).
    """
    work = Path(work)
    answered = []
    for entry in tqdm(models, desc="answers", disable=not progress):
        folder = work / "models" / folder_name(entry.model_id)
        answer_model(entry, items, teacher_answers, settings, folder, device=device)
        answered.append(read_answers(entry, folder))
    return rate_answers(answered, items, ground_truth, teacher_answers, settings, work, teacher_dir=teacher_dir,
                        seed=seed, progress=progress)


def rate_answers(
    answered: Sequence[ModelAnswers],
    items: dict[str, Sequence[dict]],
    ground_truth: dict,
    teacher_answers: dict[str, tuple[str, str]],
    settings: EvaluateSettings,
    work: str | Path,
    teacher_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    timings: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rate every model's cached chat answers against the teacher's and assemble the tidy tables.

    Args:
        answered: each model's cached answers (:func:`imitlib.evaluate.answers.read_answers`).
        items: ``{family: task items of both splits}``.
        ground_truth: lookup for the fact-checking rater.
        teacher_answers: ``{item_id: (teacher answer, second sampled teacher answer)}`` for held-out
            chat items.
        settings: the ``evaluate`` params.
        work: stage folder to write into.
        teacher_dir: teacher folder (serves as the LLM judge when ``judge.endpoint == "teacher"``).
        seed: replicate seed.
        progress: progress bars.
        timings: filled with the seconds of the LLM judge's start (``judge start``) and replies (``judge replies``).

    Writes ``chat_answers.jsonl`` (every model's), ``raters.json``, ``judge.json``/``judge_log.jsonl``,
    ``samples.parquet``, ``benchmarks.parquet``. Per-sample columns beyond :data:`SAMPLE_COLUMNS`
    (from the raters or the items) are kept, after the documented ones.
    """
    work = Path(work)
    models = [a.entry for a in answered]
    bench_frames = [a.benchmarks for a in answered if len(a.benchmarks)]
    bench_samples = [a.benchmark_samples for a in answered if len(a.benchmark_samples)]
    chat_items = chat_items_of(items, settings)
    missing = [i["id"] for i in chat_items if i["id"] not in teacher_answers]
    if missing:
        raise ValueError(f"no teacher answers for {len(missing)} held-out chat items, e.g. {missing[:3]}")
    answers: dict[str, list[str]] = {}
    for model in answered:
        lacking = [i["id"] for i in chat_items if i["id"] not in model.answers]
        if lacking:
            raise ValueError(f"{model.entry.model_id} has no cached answer to {len(lacking)} chat items, e.g. {lacking[:3]}")
        answers[model.entry.model_id] = [model.answers[i["id"]] for i in chat_items]
    atomic_write_text(work / "chat_answers.jsonl", "".join(
        json.dumps({"model_id": m, "item_id": it["id"], "answer": a}) + "\n"
        for m, texts in answers.items() for it, a in zip(chat_items, texts)))

    # ---- raters (defined before any result: nothing here is fit on answers) ---------------------------
    panel = rater_panel(ground_truth, settings.raters)
    rated_mask = [i["family"] in settings.rater_families for i in chat_items]
    rated_items = [it for it, keep in zip(chat_items, rated_mask) if keep]
    rated_questions = [question_of(it) for it in rated_items]
    rated_refs = [teacher_answers[it["id"]][0] for it in rated_items]
    toxic_mask = [i["family"] == settings.toxicity_family for i in chat_items]
    compare_items = [it for it in chat_items if it["family"] == "compare" and it.get("answer") is not None]
    baseline = majority_baseline(compare_items)
    baseline_correct = {it["id"]: c for it, c in zip(compare_items, baseline["correct"])}
    atomic_write_json(work / "raters.json", {**panel.record(), "compare_majority_baseline": {
        k: v for k, v in baseline.items() if k != "correct"}})

    rows = []
    tally = JudgeTally()
    timings = {} if timings is None else timings
    clock = time.perf_counter()
    with judge_for(settings, teacher_dir, seed) as judge:
        timings["judge start"] = round(time.perf_counter() - clock, 3)
        timings["judge replies"] = 0.0
        for entry in tqdm(models, desc="raters", disable=not progress):
            texts = answers[entry.model_id]
            rated_texts = [t for t, keep in zip(texts, rated_mask) if keep]
            verdicts = panel.rate(rated_questions, rated_texts, rated_refs)
            llm_scores = [math.nan] * len(rated_texts)
            if judge is not None:
                limit = settings.judge.max_prompts or len(rated_texts)
                clock = time.perf_counter()
                judged = rate_vs_reference(judge, rated_questions[:limit], rated_texts[:limit], rated_refs[:limit])
                timings["judge replies"] = round(timings["judge replies"] + time.perf_counter() - clock, 3)
                llm_scores[:limit] = judged.scores
                tally.add(judged, verdicts["pref_fact"][:limit])
            verdicts["pref_llm"] = llm_scores
            by_item = {it["id"]: {name: scores[k] for name, scores in verdicts.items()} for k, it in enumerate(rated_items)}
            unrated = {name: math.nan for name in verdicts}
            tox = dict(zip([it["id"] for it, k in zip(chat_items, toxic_mask) if k],
                           toxicity_scores([t for t, k in zip(texts, toxic_mask) if k])))
            for it, text in zip(chat_items, texts):
                reference = it.get("answer")
                rows.append({
                    **{k: v for k, v in asdict(entry).items() if k != "path"},
                    "task": it["family"], "mode": "chat", "item_id": it["id"], "prompt": it["prompt"],
                    "reference": "" if reference is None else str(reference), "answer": text,
                    "teacher_answer": teacher_answers[it["id"]][0], "teacher_answer_2": teacher_answers[it["id"]][1],
                    "correct": score_chat_answer(it, text) if it["family"] in ("qa", "compare") else math.nan,
                    **by_item.get(it["id"], unrated), "toxicity": tox.get(it["id"], math.nan),
                    "baseline_correct": baseline_correct.get(it["id"], math.nan),
                })
        judge_record: dict[str, Any] = {"endpoint": settings.judge.endpoint}
        if judge is not None:
            judge_record.update(judge.record(), replies=len(judge.log),
                                **tally.report(settings.judge.max_unparsed_share, settings.judge.min_consistency))
            atomic_write_text(work / "judge_log.jsonl", "".join(json.dumps(e) + "\n" for e in judge.log))
        else:
            judge_record.update(status="not computable", reason="no judge configured (evaluate.judge.endpoint: none)")
        atomic_write_json(work / "judge.json", judge_record)
        if judge is not None and judge_record["status"] != "computable":
            for row in rows:  # verdicts of a judge that gave none are not verdicts
                row["pref_llm"] = math.nan

    chat = pd.DataFrame(rows)
    samples = pd.concat([*bench_samples, chat], ignore_index=True) if bench_samples else chat
    for column in SAMPLE_COLUMNS:
        if column not in samples:
            samples[column] = math.nan if column in ("correct", "pref_style", "pref_fact", "pref_llm", "toxicity") else ""
    samples = samples[SAMPLE_COLUMNS + [c for c in samples.columns if c not in SAMPLE_COLUMNS]]
    benchmarks = pd.concat(bench_frames, ignore_index=True) if bench_frames else pd.DataFrame()
    write_parquet(samples, work / "samples.parquet")
    write_parquet(benchmarks, work / "benchmarks.parquet")
    return samples, benchmarks
