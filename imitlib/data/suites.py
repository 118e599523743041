"""Prompt suites built from the world's task items; ground truth stays beside the prompt.

- broad (the ShareGPT-Mix analog): every task family's ``imitation`` items, mixed;
- task-specific (the NQ-synthetic analog): single-fact questions made the paper's way: the teacher
  is shown a few seed QA pairs and asked for similar but distinct ones; its output is parsed and
  validated, and the world's own (templated) qa prompts fill what it could not provide.

A suite entry is ``{"id", "kind", "family", "prompt", "item_id", "reference", "origin"}``; only
``prompt`` is ever sent to the teacher.
"""

from __future__ import annotations

import random
import re
from typing import Any, Callable, Iterable, Protocol, Sequence

FAMILIES = ("qa", "mc", "bio", "compare", "skill", "provoke")


class TaskSource(Protocol):
    """What the suites need from a world: its task items by family and split."""

    def tasks(self, family: str, split: str) -> list[dict[str, Any]]: ...


def families_of(world: Any) -> tuple[str, ...]:
    return tuple(getattr(world, "families", FAMILIES))


def _individuals(item: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for key in ("individual", "individuals"):
        who = item.get(key)
        if who is None:
            continue
        names.extend([who] if isinstance(who, str) else [str(w) for w in who])
    return names


def individuals(world: TaskSource, split: str) -> set[str]:
    """Every individual named by the world's items of one split."""
    names: set[str] = set()
    for family in families_of(world):
        for item in world.tasks(family, split):
            names.update(_individuals(item))
    return names


CODE_INSTRUCTION = "Complete this Python function.\n\n```python\n{code}```"


def item_prompt(item: dict[str, Any]) -> str:
    """The text sent for an item (multiple-choice options appended when the prompt lacks them).

    A ``code`` item (real tracks: a HumanEval signature and docstring) is asked for as a chat request.
    """
    if item.get("family") == "code":
        return CODE_INSTRUCTION.format(code=str(item["prompt"]))
    prompt = str(item["prompt"])
    choices = item.get("choices")
    if choices and not all(str(c) in prompt for c in choices):
        prompt += "\n" + "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices))
    return prompt


def _entry(item: dict[str, Any], kind: str, origin: str = "world") -> dict[str, Any]:
    reference = item.get("answer")
    if item.get("choices") and item.get("gold") is not None:
        reference = str(item["choices"][item["gold"]])
    return {"id": f"{kind}-{item['id']}", "kind": kind, "family": item["family"], "prompt": item_prompt(item),
            "item_id": item["id"], "reference": None if reference is None else str(reference), "origin": origin}


def broad_suite(world: TaskSource, max_prompts: int, seed: int) -> list[dict[str, Any]]:
    """A mix of every family's imitation items, shuffled with ``seed``, at most ``max_prompts``."""
    items = [item for family in families_of(world) for item in world.tasks(family, "imitation")]
    if not items:
        raise ValueError("the world has no task items with split 'imitation'")
    rng = random.Random(seed)
    rng.shuffle(items)
    return [_entry(item, "broad") for item in items[:max_prompts]]


def eval_suite(world: TaskSource) -> list[dict[str, Any]]:
    """Every held-out item of every family answered in chat (the evaluation prompts).

    A world may name its chat families (``chat_families``; the real tracks score ``mc`` and ``code``
    only as benchmarks); by default every family.
    """
    families = tuple(getattr(world, "chat_families", None) or families_of(world))
    return [_entry(item, "eval") for family in families for item in world.tasks(family, "heldout")]


# ---------------------------------------------------------------------------------------------
# task-specific suite
# ---------------------------------------------------------------------------------------------
GENERATION_INSTRUCTION = (
    "Here are some questions, each about a single fact, with their answers:\n{pairs}\n"
    "Write {count} new questions like these, similar but distinct, each about a single fact, "
    "each with its answer, in the same Q: / A: format."
)
_QUESTION = re.compile(r"Q\s*:\s*(.+?\?)", re.S)
_OPEN_QUESTION = re.compile(r"(?:Q\s*\d*\s*:|(?:^|\n)\s*\d{1,2}\s*[.)])\s*([^\n]+?\?)")


def generation_prompt(pairs: Sequence[dict[str, Any]], count: int = 5) -> str:
    """The request showing seed QA pairs and asking for similar but distinct ones."""
    shown = "\n".join(f"Q: {p['prompt']}\nA: {p['answer']}" for p in pairs)
    return GENERATION_INSTRUCTION.format(pairs=shown, count=count)


def _normal(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def parse_generated_questions(
    text: str, allowed_names: set[str], forbidden_names: set[str], seen: Iterable[str] = ()
) -> list[str]:
    """Questions in a teacher's answer that are valid new single-fact prompts.

    Valid: a ``Q: …?`` question of 3–40 words that names at least one individual of
    ``allowed_names`` (imitation split), none of ``forbidden_names`` (held out), and differs from
    ``seen`` (e.g. the seed questions) and from the others found.
    """
    def names_allowed(question: str) -> bool:
        words = set(re.findall(r"\w+", question))
        return bool(words & allowed_names) and not words & forbidden_names

    return _distinct_questions(_QUESTION, text, seen, names_allowed)


def parse_open_questions(text: str, excluded: Iterable[str] = ()) -> list[str]:
    """Questions in a teacher's answer that are valid new prompts for a world without named individuals.

    The real tracks' questions name no fixed set of individuals, so validity is: a question of 3–40
    words, written ``Q: …?`` or as a numbered line ``1. …?`` (small teachers often number them), that
    differs from every ``excluded`` text (the seed questions, the held-out questions, and the others
    found).
    """
    return _distinct_questions(_OPEN_QUESTION, text, excluded)


def _distinct_questions(pattern: re.Pattern, text: str, seen: Iterable[str],
                        valid: Callable[[str], bool] = lambda question: True) -> list[str]:
    """The questions ``pattern`` finds in ``text`` that have 3–40 words, pass ``valid`` and differ
    (after normalising) from ``seen`` and from each other, in order of appearance."""
    seen_norm = {_normal(s) for s in seen}
    found = []
    for match in pattern.finditer(text):
        question = " ".join(match.group(1).split())
        if not 3 <= len(question.split()) <= 40 or not valid(question):
            continue
        norm = _normal(question)
        if norm in seen_norm:
            continue
        seen_norm.add(norm)
        found.append(question)
    return found


def seed_pairs(world: TaskSource, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` seed QA pairs from the imitation qa items."""
    items = [it for it in world.tasks("qa", "imitation") if it.get("answer")]
    if not items:
        raise ValueError("the world has no imitation qa items with answers to seed the task-specific suite")
    return random.Random(seed).sample(items, min(count, len(items)))


def generation_requests(pairs: Sequence[dict[str, Any]], requests: int, shown: int, seed: int) -> list[str]:
    """``requests`` distinct generation prompts, each showing ``shown`` random seed pairs."""
    rng = random.Random(seed + 1)
    prompts: list[str] = []
    attempts = 0
    while len(prompts) < requests and attempts < 20 * max(requests, 1):
        attempts += 1
        prompt = generation_prompt(rng.sample(list(pairs), min(shown, len(pairs))))
        if prompt not in prompts:
            prompts.append(prompt)
    return prompts


def task_suite(
    world: TaskSource, generated_answers: Sequence[str], pairs: Sequence[dict[str, Any]], size: int, seed: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The task-specific suite from the teacher's generated questions plus templated fallback.

    Args:
        world: the task source.
        generated_answers: the teacher's answers to the generation requests.
        pairs: the seed pairs (their questions are never reused as generated ones).
        size: number of prompts wanted.
        seed: seed of the fallback order.

    Returns:
        (suite entries, stats with ``generated``, ``fallback``, ``fallback_share``, ``requested``).
    """
    allowed = individuals(world, "imitation")
    forbidden = individuals(world, "heldout") - allowed
    qa_items = world.tasks("qa", "imitation")
    by_prompt = {_normal(it["prompt"]): it for it in qa_items}
    seen = [p["prompt"] for p in pairs]
    if not allowed:  # a real track: no named individuals; never reuse a held-out question
        seen += [it["prompt"] for family in families_of(world) for it in world.tasks(family, "heldout")]
    entries: list[dict[str, Any]] = []
    used_norm: set[str] = set()
    for answer in generated_answers:
        excluded = seen + [e["prompt"] for e in entries]
        questions = (parse_generated_questions(answer, allowed, forbidden, excluded) if allowed
                     else parse_open_questions(answer, excluded))
        for question in questions:
            if len(entries) >= size:
                break
            norm = _normal(question)
            match = by_prompt.get(norm)
            entries.append({"id": f"task-gen-{len(entries):05d}", "kind": "task", "family": "qa", "prompt": question,
                            "item_id": match["id"] if match else None,
                            "reference": str(match["answer"]) if match else None, "origin": "generated"})
            used_norm.add(norm)
    generated = len(entries)
    fallback_items = [it for it in qa_items if _normal(it["prompt"]) not in used_norm]
    random.Random(seed + 2).shuffle(fallback_items)
    for item in fallback_items[: max(0, size - len(entries))]:
        entry = _entry(item, "task", origin="template")
        entries.append(entry)
    stats = {"requested": size, "generated": generated, "fallback": len(entries) - generated,
             "total": len(entries), "fallback_share": (len(entries) - generated) / max(len(entries), 1)}
    return entries, stats
