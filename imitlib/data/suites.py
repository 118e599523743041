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
    return individuals_of(item for family in families_of(world) for item in world.tasks(family, split))


def individuals_of(items: Iterable[dict[str, Any]]) -> set[str]:
    """Every individual named by ``items``."""
    names: set[str] = set()
    for item in items:
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


def code_task_suite(pool: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Task-specific code prompts: every ``code`` problem of the prompt pool (the imitation split), in id order.

    The teacher's answers to them are its solutions to the problems, the code analog of NQ-synthetic.
    """
    code = sorted((it for it in pool if it.get("family") == "code"), key=lambda it: str(it["id"]))
    return [_entry(item, "task", origin="imitation split") for item in code]


def imitation_pool(world: Any) -> list[dict[str, Any]]:
    """The prompts users may ask, with ground truth: the world's ``imitation_pool()`` when it has one
    (every individual, and families never evaluated such as chit-chat), else every family's
    ``imitation`` items."""
    if callable(getattr(world, "imitation_pool", None)):
        return list(world.imitation_pool())
    return [item for family in families_of(world) for item in world.tasks(family, "imitation")]


def popularity_of(world: Any) -> dict[str, float]:
    """The world's popularity weight per individual (its ``popularity`` mapping or method, else its
    knowledge base's), or {} (uniform) when it has none."""
    popularity = getattr(world, "popularity", None)
    if popularity is None and getattr(world, "kb", None) is not None:
        popularity = getattr(world.kb, "popularity", None)
    if callable(popularity):
        popularity = popularity()
    return {str(name): float(weight) for name, weight in sorted((popularity or {}).items())}


def item_weight(item: dict[str, Any], popularity: dict[str, float]) -> float:
    """How often users ask an item, relative to an average one.

    An item naming individuals weighs the mean of their popularity scaled so the average individual
    weighs 1; an item naming none (skills, chit-chat) weighs 1, so it is asked as often as an item
    about an average individual. With no popularity (``{}``) every item weighs 1.
    """
    names = _individuals(item)
    if not names or not popularity:
        return 1.0
    scale = len(popularity) / sum(popularity.values())
    missing = [n for n in names if n not in popularity]
    if missing:
        raise KeyError(f"item {item.get('id')!r} names {missing}, who have no popularity weight")
    return scale * sum(popularity[n] for n in names) / len(names)


def natural_sample(pool: Sequence[dict[str, Any]], popularity: dict[str, float], count: int,
                   seed: int) -> list[dict[str, Any]]:
    """``count`` distinct items of ``pool`` drawn the way users ask: weighted by :func:`item_weight`.

    Weighted sampling without replacement (Efraimidis & Spirakis 2006: the ``count`` largest keys
    ``u ** (1 / weight)``, ``u`` uniform), so every prefix of the result is itself such a sample;
    returned in draw order. A pure function of (pool, popularity, count, seed); the pool's order
    matters only through its ids (it is sorted by id first).
    """
    ids = [str(item["id"]) for item in pool]
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"the prompt pool has duplicate item ids, e.g. {duplicates[:3]}")
    rng = random.Random(f"natural-{seed}")
    ordered = sorted(pool, key=lambda item: str(item["id"]))
    keyed = []
    for item in ordered:
        weight = item_weight(item, popularity)
        if weight <= 0:
            raise ValueError(f"item {item['id']!r} has weight {weight}; weights must be positive")
        keyed.append((rng.random() ** (1.0 / weight), str(item["id"]), item))
    keyed.sort(key=lambda k: (-k[0], k[1]))
    return [item for _, _, item in keyed[:max(0, count)]]


def broad_suite(world: TaskSource, max_prompts: int, seed: int, popularity: dict[str, float] | None = None,
                pool: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """At most ``max_prompts`` prompts of the pool (default: the world's :func:`imitation_pool` without
    evaluation prompts), drawn by :func:`natural_sample` with the world's popularity (``popularity``
    overrides it)."""
    items = without_evaluation_prompts(imitation_pool(world), world)[0] if pool is None else list(pool)
    if not items:
        raise ValueError("the world has no imitation prompts (no imitation_pool and no items with split 'imitation')")
    weights = popularity_of(world) if popularity is None else popularity
    return [_entry(item, "broad") for item in natural_sample(items, weights, max_prompts, seed)]


def eval_suite(world: TaskSource, answered: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every held-out item of every family answered in chat (the evaluation prompts).

    A world may name its chat families (``chat_families``; the real tracks score ``mc`` and ``code``
    only as benchmarks); by default every family. ``answered``: keep only these items (the ones
    ``04_evaluate`` answers in chat, see :func:`chat_items`).
    """
    families = tuple(getattr(world, "chat_families", None) or families_of(world))
    entries = [_entry(item, "eval") for family in families for item in world.tasks(family, "heldout")]
    if answered is not None:
        keep = {item["id"] for item in answered}
        entries = [e for e in entries if e["item_id"] in keep]
    return entries


def chat_items(heldout: dict[str, Sequence[dict[str, Any]]], rater_families: Sequence[str],
               toxicity_family: str | None, per_family: int | None) -> list[dict[str, Any]]:
    """The held-out items every model answers in chat (``04_evaluate``): the rated families, then the
    toxicity family, the first ``per_family`` items of each (all where None), each item once."""
    items = []
    for family in dict.fromkeys([*rater_families, *([toxicity_family] if toxicity_family else [])]):
        rows = list(heldout.get(family, []))
        items.extend(rows if per_family is None else rows[:per_family])
    return items


# ---------------------------------------------------------------------------------------------
# task-specific suite
# ---------------------------------------------------------------------------------------------
GENERATION_INSTRUCTION = (
    "Here are some questions, each about a single fact, with their answers:\n{pairs}\n"
    "Write {count} new questions like these, similar but distinct, each about a single fact, "
    "each with its answer, in the same Q: / A: format."
)
_QUESTION = re.compile(r"Q\s*:\s*((?:(?!Q\s*:)[^\n])+?\?)")  # one line, never across another Q:
_OPEN_QUESTION = re.compile(r"(?:Q\s*\d*\s*:|(?:^|\n)\s*\d{1,2}\s*[.)])\s*([^\n]+?\?)")


def generation_prompt(pairs: Sequence[dict[str, Any]], count: int = 5) -> str:
    """The request showing seed QA pairs and asking for similar but distinct ones."""
    shown = "\n".join(f"Q: {p['prompt']}\nA: {p['answer']}" for p in pairs)
    return GENERATION_INSTRUCTION.format(pairs=shown, count=count)


def generation_answer(pairs: Sequence[dict[str, Any]]) -> str:
    """The answer a generation request asks for: one ``Q: <question>`` / ``A: <answer>`` pair per line
    pair, the format :func:`parse_generated_questions` reads (a world may tune its teacher on it)."""
    return "\n".join(f"Q: {p['prompt']}\nA: {p['answer']}" for p in pairs)


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


def seed_pairs(world: TaskSource, count: int, seed: int, pool: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``count`` seed QA pairs from the qa items of the prompt pool (default :func:`imitation_pool`)."""
    pool = imitation_pool(world) if pool is None else pool
    items = sorted((it for it in pool if it.get("family") == "qa" and it.get("answer")), key=lambda it: str(it["id"]))
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


_CANDIDATE = re.compile(r"Q\s*:")
_OPEN_CANDIDATE = re.compile(r"(?:Q\s*\d*\s*:|(?:^|\n)\s*\d{1,2}\s*[.)])")


def evaluation_prompts(world: TaskSource) -> list[str]:
    """Every held-out item's prompt text (never reused as an imitation prompt)."""
    return [it["prompt"] for family in families_of(world) for it in world.tasks(family, "heldout")]


def without_evaluation_prompts(items: Sequence[dict[str, Any]], world: TaskSource) -> tuple[list[dict[str, Any]], int]:
    """``items`` whose prompt is not an evaluation prompt (after normalising), and how many were dropped."""
    excluded = {_normal(p) for p in evaluation_prompts(world)}
    kept = [it for it in items if _normal(item_prompt(it)) not in excluded and _normal(str(it["prompt"])) not in excluded]
    return kept, len(items) - len(kept)


def task_suite(
    world: TaskSource, generated_answers: Sequence[str], pairs: Sequence[dict[str, Any]], size: int, seed: int,
    pool: Sequence[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The task-specific suite from the teacher's generated questions plus templated fallback.

    A generated question is valid when it is a ``Q: …?`` question of 3–40 words naming an individual
    of the prompt pool (none held out of it), and is new: not a seed question, not an evaluation
    prompt, not one found before. The fallback is the pool's own qa prompts (never an evaluation
    prompt).

    Args:
        world: the task source.
        generated_answers: the teacher's answers to the generation requests.
        pairs: the seed pairs (their questions are never reused as generated ones).
        size: number of prompts wanted.
        seed: seed of the fallback order.
        pool: the prompt pool (default :func:`imitation_pool`).

    Returns:
        (suite entries, stats): ``requested``, ``proposed`` (question candidates the teacher wrote:
        ``Q:`` markers, or numbered lines on the real tracks), ``valid`` (new valid questions among
        them), ``valid_share`` (valid / proposed; NaN when none proposed), ``generated`` (valid ones
        used), ``fallback``, ``total``, ``fallback_share``.
    """
    pool = imitation_pool(world) if pool is None else list(pool)
    allowed = individuals_of(pool)
    forbidden = individuals(world, "heldout") - allowed
    qa_items = sorted((it for it in pool if it.get("family") == "qa"), key=lambda it: str(it["id"]))
    by_prompt = {_normal(it["prompt"]): it for it in qa_items}
    seen = [p["prompt"] for p in pairs] + evaluation_prompts(world)
    entries: list[dict[str, Any]] = []
    used_norm: set[str] = set()
    proposed = valid = 0
    for answer in generated_answers:
        proposed += len((_CANDIDATE if allowed else _OPEN_CANDIDATE).findall(answer))
        excluded = seen + sorted(used_norm)
        questions = (parse_generated_questions(answer, allowed, forbidden, excluded) if allowed
                     else parse_open_questions(answer, excluded))
        valid += len(questions)
        for question in questions:
            norm = _normal(question)
            used_norm.add(norm)
            if len(entries) >= size:
                continue
            match = by_prompt.get(norm)
            entries.append({"id": f"task-gen-{len(entries):05d}", "kind": "task", "family": "qa", "prompt": question,
                            "item_id": match["id"] if match else None,
                            "reference": str(match["answer"]) if match else None, "origin": "generated"})
    generated = len(entries)
    fallback_items, _ = without_evaluation_prompts([it for it in qa_items if _normal(it["prompt"]) not in used_norm],
                                                   world)
    random.Random(seed + 2).shuffle(fallback_items)
    for item in fallback_items[: max(0, size - len(entries))]:
        entries.append(_entry(item, "task", origin="template"))
    stats = {"requested": size, "proposed": proposed, "valid": valid,
             "valid_share": valid / proposed if proposed else float("nan"), "generated": generated,
             "fallback": len(entries) - generated, "total": len(entries),
             "fallback_share": (len(entries) - generated) / max(len(entries), 1)}
    return entries, stats
