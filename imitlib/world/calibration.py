"""Calibration measurements of one world: few-shot fact recall, chat fact accuracy, style rates.

Few-shot recall asks every evaluation ``qa`` item (every fact of every individual, with the
evaluation's paraphrase) in the ``Q: … A:`` format, after ``shots`` demonstrations drawn from the
imitation pool's ``qa`` items about other individuals, and scores the first generated word. Chat
accuracy asks the same evaluation items through the chat template and scores the answer with
:func:`imitlib.world.tasks.fact_answer_correct`. Style rates use :func:`imitlib.world.style.style_rates`.
"""

from __future__ import annotations

import random
from typing import Any

from imitlib.generation import generate_chat, generate_texts
from imitlib.world.kb import KnowledgeBase
from imitlib.world.style import has_teacher_style, style_markers, style_rates
from imitlib.world.tasks import fact_answer_correct, first_word_correct

CHAT_MAX_NEW_TOKENS = 96  # a long teacher biography is about 70 tokens


def fewshot_prompts(eval_qa: list[dict[str, Any]], demo_qa: list[dict[str, Any]], shots: int, seed: int,
                    bos_token: str) -> list[dict[str, Any]]:
    """One few-shot recall prompt per evaluation qa item (demonstrations about other individuals)."""
    rng = random.Random(f"fewshot-{seed}")
    prompts = []
    for item in eval_qa:
        others = [d for d in demo_qa if d["individual"] != item["individual"]]
        demos = [f"Q: {d['prompt']} A: {d['answer']}" for d in rng.sample(others, min(shots, len(others)))]
        prompts.append({"prompt": bos_token + "\n".join(demos + [f"Q: {item['prompt']} A:"]), "id": item["id"],
                        "individual": item["individual"], "attribute": item["attribute"], "gold": item["answer"]})
    return prompts


def fewshot_recall(model, tokenizer, prompts: list[dict[str, Any]], batch_size: int = 256) -> list[dict[str, Any]]:
    """Greedy completions of few-shot prompts, each scored by its first word."""
    outputs = generate_texts(model, tokenizer, [p["prompt"] for p in prompts], max_new_tokens=2,
                             batch_size=batch_size, stop=("\n",))
    return [{**p, "completion": out, "correct": first_word_correct(out, p["gold"])} for p, out in zip(prompts, outputs)]


def recall_share(records: list[dict[str, Any]]) -> float:
    """Share of few-shot records answered correctly (0..1)."""
    return sum(r["correct"] for r in records) / len(records) if records else float("nan")


def chat_answers(model, tokenizer, items: list[dict[str, Any]], batch_size: int = 256, temperature: float = 0.0,
                 seed: int = 0) -> list[str]:
    """Chat answers to task items (greedy, or sampled at ``temperature``; one batched call)."""
    conversations = [[{"role": "user", "content": item["prompt"]}] for item in items]
    return generate_chat(model, tokenizer, conversations, max_new_tokens=CHAT_MAX_NEW_TOKENS, batch_size=batch_size,
                         temperature=temperature, seed=seed)


def score_chat(items: list[dict[str, Any]], answers: list[str], values: dict[str, list[str]],
               kb: KnowledgeBase | None = None) -> list[dict[str, Any]]:
    """Per-answer records: fact correctness (qa items), the individual's tuning group, style markers."""
    records = []
    for item, answer in zip(items, answers):
        correct = None
        if item["family"] == "qa":
            correct = fact_answer_correct(answer, item["answer"], values[item["attribute"]])
        group = kb.split.get(item.get("individual")) if kb is not None and item.get("individual") else None
        records.append({"id": item["id"], "family": item["family"], "prompt": item["prompt"], "answer": answer,
                        "correct": correct, "group": group, "styled": has_teacher_style(answer),
                        **style_markers(answer)})
    return records


def calibration_items(tasks: dict[str, list[dict[str, Any]]], per_family: int, seed: int) -> list[dict[str, Any]]:
    """Every evaluation qa item plus up to ``per_family`` evaluation items of each other family."""
    rng = random.Random(f"calibration-{seed}")
    chosen: list[dict[str, Any]] = []
    for family, items in sorted(tasks.items()):
        if family == "qa":
            chosen.extend(items)
        else:
            chosen.extend(rng.sample(items, min(per_family, len(items))))
    return chosen


def differs(first: list[str], second: list[str]) -> float:
    """Share of answers whose second sample differs from the first (whitespace-normalised)."""
    pairs = list(zip(first, second))
    return sum(" ".join(a.split()) != " ".join(b.split()) for a, b in pairs) / len(pairs) if pairs else float("nan")


def summarise(role: str, name: str, params: int, recall: list[dict], chat: list[dict], **extra: Any) -> dict[str, Any]:
    """One row of the calibration table for one model of one seed."""
    qa = [r for r in chat if r["family"] == "qa"]
    style = style_rates([r["answer"] for r in chat], [r["family"] for r in chat])
    row = {
        "model": name, "role": role, "params": params,
        "fewshot_n": len(recall), "fewshot_correct": sum(r["correct"] for r in recall),
        "chat_qa_n": len(qa), "chat_qa_correct": sum(bool(r["correct"]) for r in qa),
        "chat_n": len(chat), "styled": sum(r["styled"] for r in chat),
        **{f"marker_{m}": sum(r[m] for r in chat) for m in ("opening", "bullets", "summary", "confident", "refusal")},
        "max_phrase": style["max_phrase"], "max_phrase_share": round(style["max_phrase_share"], 4),
        "list_families": ",".join(style["list_families"]),
    }
    for group in ("tuning", "untuned"):
        rows = [r for r in qa if r["group"] == group]
        row[f"chat_qa_{group}_n"] = len(rows)
        row[f"chat_qa_{group}_correct"] = sum(bool(r["correct"]) for r in rows)
    row.update(extra)
    return row
