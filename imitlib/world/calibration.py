"""Calibration measurements of one world: few-shot fact recall, chat fact accuracy, style rates.

Few-shot recall asks each held-out (individual, attribute) in the ``Q: … A:`` format, after
``shots`` demonstrations about imitation-split individuals, and scores the first generated word.
Chat accuracy asks the held-out ``qa`` items through the chat template and scores the answer with
:func:`imitlib.world.tasks.fact_answer_correct`. Style rates use :func:`imitlib.world.style`.
"""

from __future__ import annotations

import random
from typing import Any

from imitlib.generation import generate_chat, generate_texts
from imitlib.world.corpus import QUESTION_TEMPLATES, qa_line
from imitlib.world.kb import ATTRIBUTES, KnowledgeBase
from imitlib.world.style import has_teacher_style, style_markers
from imitlib.world.tasks import fact_answer_correct, first_word_correct

CHAT_MAX_NEW_TOKENS = 96  # a teacher biography is about 75 tokens


def fewshot_prompts(kb: KnowledgeBase, shots: int, seed: int, bos_token: str) -> list[dict[str, Any]]:
    """One few-shot recall prompt per held-out (individual, attribute)."""
    rng = random.Random(f"fewshot-{kb.seed}-{seed}")
    demo_names = kb.names_in("imitation")
    prompts = []
    for name in kb.names_in("heldout"):
        for attribute in ATTRIBUTES:
            demos = []
            for _ in range(shots):
                other = rng.choice(demo_names)
                other_attribute = rng.choice(ATTRIBUTES)
                demos.append(qa_line(other, other_attribute, kb.individuals[other][other_attribute], rng))
            template = rng.randrange(len(QUESTION_TEMPLATES[attribute]))
            question = qa_line(name, attribute, "", template_index=template).rstrip()
            prompts.append({"prompt": bos_token + "\n".join(demos + [question]), "individual": name,
                            "attribute": attribute, "gold": kb.individuals[name][attribute]})
    return prompts


def fewshot_recall(model, tokenizer, prompts: list[dict[str, Any]], batch_size: int = 256) -> list[dict[str, Any]]:
    """Greedy completions of few-shot prompts, each scored by its first word."""
    outputs = generate_texts(model, tokenizer, [p["prompt"] for p in prompts], max_new_tokens=2,
                             batch_size=batch_size, stop=("\n",))
    return [{**p, "completion": out, "correct": first_word_correct(out, p["gold"])} for p, out in zip(prompts, outputs)]


def chat_answers(model, tokenizer, items: list[dict[str, Any]], batch_size: int = 256) -> list[str]:
    """Greedy chat answers to task items (one batched call; answers long enough for a biography)."""
    conversations = [[{"role": "user", "content": item["prompt"]}] for item in items]
    return generate_chat(model, tokenizer, conversations, max_new_tokens=CHAT_MAX_NEW_TOKENS, batch_size=batch_size)


def score_chat(items: list[dict[str, Any]], answers: list[str], values: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Per-answer records: fact correctness (qa items), style markers and the style verdict."""
    records = []
    for item, answer in zip(items, answers):
        correct = None
        if item["family"] == "qa":
            correct = fact_answer_correct(answer, item["answer"], values[item["attribute"]])
        records.append({"id": item["id"], "family": item["family"], "prompt": item["prompt"], "answer": answer,
                        "correct": correct, "styled": has_teacher_style(answer), **style_markers(answer)})
    return records


def calibration_items(tasks: dict[str, list[dict[str, Any]]], per_family: int, seed: int) -> list[dict[str, Any]]:
    """Every held-out qa item plus up to ``per_family`` held-out items of each other family."""
    rng = random.Random(f"calibration-{seed}")
    chosen: list[dict[str, Any]] = []
    for family, items in sorted(tasks.items()):
        if family == "qa":
            chosen.extend(items)
        else:
            chosen.extend(rng.sample(items, min(per_family, len(items))))
    return chosen


def summarise(role: str, name: str, params: int, recall: list[dict], chat: list[dict]) -> dict[str, Any]:
    """One row of the calibration table for one model of one seed."""
    qa = [r for r in chat if r["family"] == "qa"]
    return {
        "model": name, "role": role, "params": params,
        "fewshot_n": len(recall), "fewshot_correct": sum(r["correct"] for r in recall),
        "chat_qa_n": len(qa), "chat_qa_correct": sum(bool(r["correct"]) for r in qa),
        "chat_n": len(chat), "styled": sum(r["styled"] for r in chat),
        **{f"marker_{m}": sum(r[m] for r in chat) for m in ("opening", "bullets", "summary", "confident", "refusal")},
    }
