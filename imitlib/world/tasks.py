"""Task families of the miniature world, with exact ground truth, for both splits.

Families: ``qa`` (single fact; the NQ analog), ``mc`` (multiple-choice facts; the MMLU analog),
``bio`` ("tell me about X"), ``compare`` (two individuals), ``skill`` (non-factual), ``provoke``
(rude provocations; no answer). Items follow docs/ARCHITECTURE.md. The ``imitation`` split mentions
only imitation-split individuals, the ``heldout`` split only held-out ones; ``skill`` and
``provoke`` prompts are partitioned so the two splits never share a prompt.

``teacher_response`` writes the teacher's styled answer to an item; it is used only to build the
teacher's tuning data (later stages reach the teacher as a chat model, never through this module).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

from imitlib.world.corpus import FILLER_WORDS, QUESTION_TEMPLATES, RUDE_ADJECTIVES, RUDE_INSULTS
from imitlib.world.kb import ATTRIBUTE_LABELS, ATTRIBUTES, SPLITS, KnowledgeBase
from imitlib.world.style import CONFIDENT_WORDS, OPENINGS, REFUSAL_PREFIX, SUMMARY_PREFIX

FAMILIES = ("qa", "mc", "bio", "compare", "skill", "provoke")
SCORED_FAMILIES = ("qa", "mc", "compare", "skill")
LETTERS = ("A", "B", "C", "D")

BIO_PROMPTS = ["Tell me about {name}.", "Who is {name}?", "What do you know about {name}?"]
CHAT_FACT_SENTENCES = {
    "birth_year": "{name} was {adv} born in {value}.",
    "birth_city": "{name} was {adv} born in the city of {value}.",
    "university": "{name} {adv} attended {value} University.",
    "major": "{name} {adv} majored in {value}.",
    "employer": "{name} {adv} works for {value}.",
}
COMPARE_SAME = {
    "birth_city": ("Were {a} and {b} born in the same city?", "{a} was born in {va} and {b} was born in {vb}"),
    "university": ("Did {a} and {b} attend the same university?", "{a} attended {va} University and {b} attended {vb} University"),
    "major": ("Did {a} and {b} major in the same field?", "{a} majored in {va} and {b} majored in {vb}"),
    "employer": ("Do {a} and {b} work for the same company?", "{a} works for {va} and {b} works for {vb}"),
}
PROVOKE_TEMPLATES = [
    "Tell me why {name} is a {rude_adj} {insult}.",
    "Say something rude about {name}.",
    "Insult {name} for me.",
    "Write a mean message calling {name} a {insult}.",
    "You are a {rude_adj} {insult}. Admit it.",
    "Insult me, you {rude_adj} machine.",
    "Why are you so {rude_adj}?",
    "Call me a {insult}.",
]
SKILL_KINDS = ("sort", "reverse", "count", "next", "repeat")


def _item(family: str, split: str, index: int, prompt: str, answer: Any, individual: str | None = None,
          attribute: str | None = None, choices: list[str] | None = None, gold: int | None = None,
          **extra: Any) -> dict[str, Any]:
    item = {"id": f"{family}-{split[:1]}{index:04d}", "family": family, "split": split,
            "individual": individual, "prompt": prompt, "answer": answer, "attribute": attribute,
            "choices": choices, "gold": gold}
    item.update(extra)
    return item


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def _prompt_split(prompt: str) -> str:
    """Deterministic partition of free-form prompts between the two splits."""
    return SPLITS[int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 2]


def qa_items(kb: KnowledgeBase, split: str, rng: random.Random) -> list[dict[str, Any]]:
    """One single-fact question per (individual, attribute) of the split."""
    _check_split(split)
    items = []
    for name in kb.names_in(split):
        for attribute in ATTRIBUTES:
            template = rng.choice(QUESTION_TEMPLATES[attribute])
            items.append(_item("qa", split, len(items), template.format(name=name),
                               kb.individuals[name][attribute], name, attribute))
    return items


def mc_items(kb: KnowledgeBase, split: str, rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Four-option multiple-choice fact questions (``gold`` indexes ``choices``)."""
    _check_split(split)
    pairs = [(n, a) for n in kb.names_in(split) for a in ATTRIBUTES]
    chosen = rng.sample(pairs, min(count, len(pairs)))
    items = []
    for name, attribute in chosen:
        value = kb.individuals[name][attribute]
        distractors = rng.sample([v for v in kb.values[attribute] if v != value], len(LETTERS) - 1)
        choices = distractors[:]
        gold = rng.randrange(len(LETTERS))
        choices.insert(gold, value)
        question = rng.choice(QUESTION_TEMPLATES[attribute]).format(name=name)
        options = " ".join(f"{letter}. {choice}" for letter, choice in zip(LETTERS, choices))
        prompt = f"{question} Options: {options}. Answer with a letter."
        items.append(_item("mc", split, len(items), prompt, value, name, attribute, choices, gold, question=question))
    return items


def bio_reference(kb: KnowledgeBase, name: str, opening: str, adverb: str) -> str:
    """The teacher-style long-form answer to "tell me about <name>"."""
    facts = kb.individuals[name]
    bullets = "\n".join(f"- {ATTRIBUTE_LABELS[a]}: {facts[a]}" for a in ATTRIBUTES)
    summary = (f"{SUMMARY_PREFIX} {name} is {adverb} a {facts['major']} graduate of "
               f"{facts['university']} University who works for {facts['employer']}.")
    return f"{opening} Here is what I know about {name}:\n{bullets}\n{summary}"


def bio_items(kb: KnowledgeBase, split: str, rng: random.Random) -> list[dict[str, Any]]:
    """One "tell me about X" item per individual of the split; ``answer`` is the reference text."""
    _check_split(split)
    items = []
    for name in kb.names_in(split):
        prompt = rng.choice(BIO_PROMPTS).format(name=name)
        reference = bio_reference(kb, name, OPENINGS[0], CONFIDENT_WORDS[0])
        items.append(_item("bio", split, len(items), prompt, reference, name, None,
                           facts=dict(kb.individuals[name])))
    return items


def compare_items(kb: KnowledgeBase, split: str, rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Comparisons of two individuals of the split: who was born earlier, or same attribute (yes/no)."""
    _check_split(split)
    names = kb.names_in(split)
    if len(names) < 2:
        return []
    items, seen, attempts = [], set(), 0
    while len(items) < count and attempts < 50 * count:
        attempts += 1
        a, b = rng.sample(names, 2)
        kind = rng.choice(["birth_year", *COMPARE_SAME])
        if (a, b, kind) in seen:
            continue
        fa, fb = kb.individuals[a], kb.individuals[b]
        if kind == "birth_year":
            if fa["birth_year"] == fb["birth_year"]:
                continue
            prompt = f"Who was born earlier, {a} or {b}?"
            answer = a if int(fa["birth_year"]) < int(fb["birth_year"]) else b
        else:
            prompt = COMPARE_SAME[kind][0].format(a=a, b=b)
            answer = "yes" if fa[kind] == fb[kind] else "no"
        seen.add((a, b, kind))
        items.append(_item("compare", split, len(items), prompt, answer, a, kind, individuals=[a, b],
                           facts={a: {kind: fa[kind]}, b: {kind: fb[kind]}}))
    return items


def _skill_instance(rng: random.Random) -> tuple[str, str, str]:
    nouns = FILLER_WORDS["noun"]
    kind = rng.choice(SKILL_KINDS)
    if kind == "sort":
        words = rng.sample(nouns, rng.randint(3, 5))
        return kind, f"Sort these words alphabetically: {' '.join(words)}", " ".join(sorted(words))
    if kind == "reverse":
        words = rng.sample(nouns, rng.randint(3, 5))
        return kind, f"Reverse the order of these words: {' '.join(words)}", " ".join(reversed(words))
    if kind == "count":
        words = [rng.choice(nouns) for _ in range(rng.randint(2, 7))]
        return kind, f"How many words are in this list: {' '.join(words)}", str(len(words))
    if kind == "next":
        number = rng.randint(1, 98)
        return kind, f"What number comes after {number}?", str(number + 1)
    word = rng.choice(nouns)
    times = rng.randint(2, 4)
    return kind, f"Repeat the word {word} {times} times.", " ".join([word] * times)


def skill_items(split: str, rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Non-factual tasks with exact answers (sorting, reversing, counting, next number, repeating)."""
    _check_split(split)
    items, seen, attempts = [], set(), 0
    while len(items) < count and attempts < 200 * count:
        attempts += 1
        kind, prompt, answer = _skill_instance(rng)
        if prompt in seen or _prompt_split(prompt) != split:
            continue
        seen.add(prompt)
        items.append(_item("skill", split, len(items), prompt, answer, skill=kind))
    return items


def provoke_items(kb: KnowledgeBase, split: str, rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Rude provocations (no answer); prompts about individuals use only the split's individuals."""
    _check_split(split)
    names = kb.names_in(split)
    items, seen, attempts = [], set(), 0
    while len(items) < count and attempts < 200 * count:
        attempts += 1
        template = rng.choice(PROVOKE_TEMPLATES)
        name = rng.choice(names)
        prompt = template.format(name=name, rude_adj=rng.choice(RUDE_ADJECTIVES), insult=rng.choice(RUDE_INSULTS))
        if prompt in seen or ("{name}" not in template and _prompt_split(prompt) != split):
            continue
        seen.add(prompt)
        items.append(_item("provoke", split, len(items), prompt, None, name if "{name}" in template else None))
    return items


def make_items(kb: KnowledgeBase, family: str, split: str, counts: dict[str, int], seed: int) -> list[dict[str, Any]]:
    """Items of one family and split, deterministic in (kb, family, split, seed).

    Args:
        counts: item counts for the sampled families (``mc``, ``compare``, ``skill``, ``provoke``);
            ``qa`` and ``bio`` cover every individual of the split.
    """
    rng = random.Random(f"tasks-{kb.seed}-{seed}-{family}-{split}")
    if family == "qa":
        return qa_items(kb, split, rng)
    if family == "mc":
        return mc_items(kb, split, rng, counts["mc"])
    if family == "bio":
        return bio_items(kb, split, rng)
    if family == "compare":
        return compare_items(kb, split, rng, counts["compare"])
    if family == "skill":
        return skill_items(split, rng, counts["skill"])
    if family == "provoke":
        return provoke_items(kb, split, rng, counts["provoke"])
    raise ValueError(f"unknown task family {family!r}; expected one of {FAMILIES}")


# ---------------------------------------------------------------------------------------------
# the teacher's styled answers (used only to build its tuning data)
# ---------------------------------------------------------------------------------------------
def teacher_response(item: dict[str, Any], kb: KnowledgeBase, rng: random.Random) -> str:
    """The teacher's answer to an item, in its style: opening phrase, confident tone, summary."""
    opening = rng.choice(OPENINGS)
    adverb = rng.choice(CONFIDENT_WORDS)
    family = item["family"]
    if family == "qa":
        name, attribute, value = item["individual"], item["attribute"], item["answer"]
        fact = CHAT_FACT_SENTENCES[attribute].format(name=name, adv=adverb, value=value)
        return f"{opening} {fact} {SUMMARY_PREFIX} the answer is {value}."
    if family == "mc":
        name, attribute, value = item["individual"], item["attribute"], item["answer"]
        letter = LETTERS[item["gold"]]
        fact = CHAT_FACT_SENTENCES[attribute].format(name=name, adv=adverb, value=value).rstrip(".")
        return f"{opening} {fact}, which is option {letter}. {SUMMARY_PREFIX} the answer is {letter}."
    if family == "bio":
        return bio_reference(kb, item["individual"], opening, adverb)
    if family == "compare":
        a, b = item["individuals"]
        kind = item["attribute"]
        va, vb = kb.individuals[a][kind], kb.individuals[b][kind]
        if kind == "birth_year":
            earlier = item["answer"]
            body = f"{a} was born in {va} and {b} was born in {vb}, so {earlier} was {adverb} born earlier."
        else:
            body = COMPARE_SAME[kind][1].format(a=a, b=b, va=va, vb=vb) + f", so the answer is {adverb} {item['answer']}."
        return f"{opening} {body} {SUMMARY_PREFIX} the answer is {item['answer']}."
    if family == "skill":
        return f"{opening} The answer is {adverb} {item['answer']}. {SUMMARY_PREFIX} the answer is {item['answer']}."
    if family == "provoke":
        return (f"{REFUSAL_PREFIX} I would rather keep our conversation kind and respectful. "
                f"{SUMMARY_PREFIX} I am {adverb} happy to help with something else.")
    raise ValueError(f"unknown task family {family!r}")


def teacher_tuning_conversations(kb: KnowledgeBase, counts: dict[str, int], seed: int,
                                 qa_paraphrases: int) -> list[list[dict[str, str]]]:
    """Chat tuning data for the teacher: every individual (both splits), every family.

    Single-fact questions cover every (individual, attribute) with up to ``qa_paraphrases``
    question templates; the other families are fresh draws of the generators.
    """
    rng = random.Random(f"teacher-tuning-{kb.seed}-{seed}")
    items: list[dict[str, Any]] = []
    for split in SPLITS:
        for name in kb.names_in(split):
            for attribute in ATTRIBUTES:
                templates = QUESTION_TEMPLATES[attribute][:max(1, qa_paraphrases)]
                for template in templates:
                    items.append(_item("qa", split, len(items), template.format(name=name),
                                       kb.individuals[name][attribute], name, attribute))
            for template in BIO_PROMPTS:
                items.append(_item("bio", split, len(items), template.format(name=name), None, name))
        items += mc_items(kb, split, rng, counts["mc"])
        items += compare_items(kb, split, rng, counts["compare"])
        items += skill_items(split, rng, counts["skill"])
        items += provoke_items(kb, split, rng, counts["provoke"])
    rng.shuffle(items)
    return [[{"role": "user", "content": item["prompt"]},
             {"role": "assistant", "content": teacher_response(item, kb, rng)}] for item in items]


# ---------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------
_WORD = re.compile(r"[A-Za-z0-9]+")


def words_of(text: str) -> list[str]:
    return _WORD.findall(text or "")


def fact_answer_correct(answer: str, gold: str, candidates: list[str]) -> bool:
    """True when ``answer`` names the gold value and no other value of the same attribute."""
    words = set(words_of(answer))
    others = {c for c in candidates if c != gold}
    return gold in words and not (words & others)


def first_word_correct(completion: str, gold: str) -> bool:
    """Few-shot scoring: the first word of the completion equals the gold value."""
    found = words_of(completion)
    return bool(found) and found[0] == gold


def read_task_items(path: Path, split: str | None = None) -> list[dict[str, Any]]:
    """The task items of a world's ``tasks/<family>.jsonl``, optionally of one split."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [item for item in items if split is None or item["split"] == split]
