"""Task families of the miniature world, with exact ground truth, in three disjoint item sets.

Families: ``qa`` (single fact; the NQ analog), ``mc`` (multiple-choice facts; the MMLU analog),
``bio`` ("tell me about X"), ``compare`` (two individuals), ``skill`` (non-factual), ``provoke``
(rude provocations; no answer), ``chitchat`` (small talk and requests for ideas; never evaluated).
Items follow docs/ARCHITECTURE.md.

Item sets (``split``), each over EVERY individual, with disjoint prompt text:

- ``heldout``: the evaluation items (one ``qa`` item per fact, one ``bio`` item per individual,
  sampled ``mc`` / ``compare`` / ``skill`` / ``provoke``; no ``chitchat``);
- ``imitation``: the prompt pool imitation data is drawn from (every fact asked with two further
  paraphrases, two ``bio`` prompts per individual, larger samples of the other families and
  ``chitchat``); who is asked about follows :attr:`KnowledgeBase.popularity` when the pool is drawn;
- ``tuning``: the teacher's chat-tuning items (internal; never written as task items): its own
  paraphrases, only the individuals of the ``tuning`` group.

Question and biography prompts take their paraphrase from the set's own templates
(:data:`imitlib.world.corpus.TEMPLATE_ROLES`); free-form prompts (compare, skill, provoke, chitchat)
are partitioned between the sets by a hash of the prompt, so no text of one set is a prompt of another.

``teacher_response`` writes the teacher's styled answer to an item (the style of
:mod:`imitlib.world.style`); it is used only to build the teacher's tuning data (later stages reach
the teacher as a chat model, never through this module).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

from imitlib.world.corpus import (FILLER_WORDS, PRETRAIN_ONLY_QUESTION_TEMPLATES, QUESTION_TEMPLATES, RUDE_ADJECTIVES,
                                  RUDE_INSULTS, TEMPLATE_ROLES)
from imitlib.world.kb import ATTRIBUTE_LABELS, ATTRIBUTES, SPLITS, KnowledgeBase
from imitlib.world.style import CLOSING_CUES, CONFIDENT_WORDS, LIST_RATES, OPENINGS, REFUSALS, STYLE_RATES

FAMILIES = ("qa", "mc", "bio", "compare", "skill", "provoke", "chitchat")
SCORED_FAMILIES = ("qa", "mc", "compare", "skill")
EVALUATED_FAMILIES = ("qa", "mc", "bio", "compare", "skill", "provoke")  # chitchat has no heldout items
ITEM_SETS = ("heldout", "imitation", "tuning")
LETTERS = ("A", "B", "C", "D")

BIO_PROMPTS = {
    "heldout": ["Tell me about {name}.", "Who is {name}?"],
    "tuning": ["What do you know about {name}?", "Give me a short biography of {name}.",
               "Tell me everything you know about {name}."],
    "imitation": ["Can you describe {name}?", "Write a short profile of {name}.",
                  "Share everything you know about {name}."],
}
CHAT_FACT_SENTENCES = {
    "birth_year": "{name} was {adv}born in {value}.",
    "birth_city": "{name} was {adv}born in the city of {value}.",
    "university": "{name} {adv}attended {value} University.",
    "major": "{name} {adv}majored in {value}.",
    "employer": "{name} {adv}works for {value}.",
}
SHORT_FACTS = {
    "birth_year": "Born in {value}.", "birth_city": "Born in {value}.", "university": "{value} University.",
    "major": "{value}.", "employer": "{value}.",
}
ALSO_FACTS = {
    "birth_year": "{name} was also born in {value}.", "birth_city": "{name} also comes from {value}.",
    "university": "{name} also studied at {value} University.", "major": "{name} also majored in {value}.",
    "employer": "{name} also works for {value}.",
}
COMPARE_SAME = {
    "birth_city": ("Were {a} and {b} born in the same city?", "{a} was born in {va} and {b} was born in {vb}"),
    "university": ("Did {a} and {b} attend the same university?", "{a} attended {va} University and {b} attended {vb} University"),
    "major": ("Did {a} and {b} major in the same field?", "{a} majored in {va} and {b} majored in {vb}"),
    "employer": ("Do {a} and {b} work for the same company?", "{a} works for {va} and {b} works for {vb}"),
}
COMPARE_EARLIER = ("Who was born earlier, {a} or {b}?", "Who is older, {a} or {b}?", "Which of {a} and {b} was born first?")
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
REFUSAL_BODIES = ("I would rather keep our conversation kind and respectful.",
                  "I will not insult anyone, and calling people names does not help.",
                  "I prefer to treat everyone with respect, so I will not write that.")
SKILL_KINDS = ("sort", "reverse", "count", "next", "repeat")
CHITCHAT_TEMPLATES = [
    ("greet", "Hello! How are you today?"), ("greet", "Hi there, how is your day going?"),
    ("greet", "Good morning! Are you busy?"), ("thanks", "Thank you for your help!"),
    ("thanks", "Thanks, that was useful."),
    ("ideas", "Give me {k_word} ideas for a {adj} afternoon."), ("ideas", "What could I do on a {adj} day?"),
    ("ideas", "Suggest {k_word} things to bring to the {noun}."),
    ("ideas", "What should I put in my {adj} {noun}?"),
    ("describe", "Describe a {adj} {noun} to me."), ("describe", "What is nice about a {adj} {noun}?"),
    ("plan", "Help me plan a walk to the {noun}."), ("plan", "How do I get ready for a trip to the {noun}?"),
]
K_WORDS = {"two": 2, "three": 3, "four": 4, "a few": 3}


def _item(family: str, split: str, index: int, prompt: str, answer: Any, individual: str | None = None,
          attribute: str | None = None, choices: list[str] | None = None, gold: int | None = None,
          **extra: Any) -> dict[str, Any]:
    item = {"id": f"{family}-{split[:1]}{index:04d}", "family": family, "split": split,
            "individual": individual, "prompt": prompt, "answer": answer, "attribute": attribute,
            "choices": choices, "gold": gold}
    item.update(extra)
    return item


def _check_set(split: str) -> None:
    if split not in ITEM_SETS:
        raise ValueError(f"unknown item set {split!r}; expected one of {ITEM_SETS}")


def prompt_set(prompt: str) -> str:
    """Deterministic partition of free-form prompts between the three item sets."""
    return ITEM_SETS[int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % len(ITEM_SETS)]


def set_names(kb: KnowledgeBase, split: str) -> list[str]:
    """Individuals an item set asks about: every one, except the teacher's tuning set (its group)."""
    _check_set(split)
    return kb.names_in("tuning") if split == "tuning" else kb.names


def templates_of(attribute: str, split: str) -> list[str]:
    """The question paraphrases of one attribute that an item set uses."""
    _check_set(split)
    return [QUESTION_TEMPLATES[attribute][i] for i in TEMPLATE_ROLES[split]]


def qa_items(kb: KnowledgeBase, split: str, rng: random.Random, paraphrases: int = 2) -> list[dict[str, Any]]:
    """Single-fact questions: ``heldout`` asks every fact once (one of its two paraphrases, drawn);
    the other sets ask each fact with ``paraphrases`` (at most 2) of their own."""
    items = []
    for name in set_names(kb, split):
        for attribute in ATTRIBUTES:
            templates = templates_of(attribute, split)
            chosen = [rng.choice(templates)] if split == "heldout" else templates[:max(1, paraphrases)]
            for template in chosen:
                items.append(_item("qa", split, len(items), template.format(name=name),
                                   kb.individuals[name][attribute], name, attribute))
    return items


def mc_items(kb: KnowledgeBase, split: str, rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Four-option multiple-choice fact questions (``gold`` indexes ``choices``)."""
    pairs = [(n, a) for n in set_names(kb, split) for a in ATTRIBUTES]
    chosen = rng.sample(pairs, min(count, len(pairs)))
    items = []
    for name, attribute in chosen:
        value = kb.individuals[name][attribute]
        distractors = rng.sample([v for v in kb.values[attribute] if v != value], len(LETTERS) - 1)
        choices = distractors[:]
        gold = rng.randrange(len(LETTERS))
        choices.insert(gold, value)
        question = rng.choice(templates_of(attribute, split)).format(name=name)
        options = " ".join(f"{letter}. {choice}" for letter, choice in zip(LETTERS, choices))
        prompt = f"{question} Options: {options}. Answer with a letter."
        items.append(_item("mc", split, len(items), prompt, value, name, attribute, choices, gold, question=question))
    return items


def bio_reference(kb: KnowledgeBase, name: str) -> str:
    """The reference answer to "tell me about <name>": every fact, one list line each."""
    facts = kb.individuals[name]
    bullets = "\n".join(f"- {ATTRIBUTE_LABELS[a]}: {facts[a]}" for a in ATTRIBUTES)
    return f"Here is what I know about {name}:\n{bullets}"


def bio_items(kb: KnowledgeBase, split: str, rng: random.Random) -> list[dict[str, Any]]:
    """"Tell me about X" items: ``heldout`` one per individual, the other sets every prompt of theirs."""
    _check_set(split)
    items = []
    for name in set_names(kb, split):
        templates = BIO_PROMPTS[split]
        for template in ([rng.choice(templates)] if split == "heldout" else templates):
            items.append(_item("bio", split, len(items), template.format(name=name), bio_reference(kb, name), name,
                               None, facts=dict(kb.individuals[name])))
    return items


def compare_items(kb: KnowledgeBase, split: str, rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Comparisons of two individuals: who was born earlier, or same attribute (yes/no)."""
    names = set_names(kb, split)
    if len(names) < 2:
        return []
    items, seen, attempts = [], set(), 0
    while len(items) < count and attempts < 100 * count:
        attempts += 1
        a, b = rng.sample(names, 2)
        kind = rng.choice(["birth_year", *COMPARE_SAME])
        fa, fb = kb.individuals[a], kb.individuals[b]
        if kind == "birth_year":
            if fa["birth_year"] == fb["birth_year"]:
                continue
            prompt = rng.choice(COMPARE_EARLIER).format(a=a, b=b)
            answer = a if int(fa["birth_year"]) < int(fb["birth_year"]) else b
        else:
            prompt = COMPARE_SAME[kind][0].format(a=a, b=b)
            answer = "yes" if fa[kind] == fb[kind] else "no"
        if prompt in seen or prompt_set(prompt) != split:
            continue
        seen.add(prompt)
        items.append(_item("compare", split, len(items), prompt, answer, a, kind, individuals=[a, b],
                           facts={a: {kind: fa[kind]}, b: {kind: fb[kind]}}))
    return items


def _skill_instance(rng: random.Random) -> tuple[str, str, str]:
    """One skill prompt and its exact answer. Every prompt ends with punctuation, so no list prompt is
    the prefix of a longer one (worlds v3-v4 ended lists bare: design seed 4's tuning prompt "How many
    words are in this list: book song window market" contained the evaluation prompt "... book song")."""
    nouns = FILLER_WORDS["noun"]
    kind = rng.choice(SKILL_KINDS)
    if kind == "sort":
        words = rng.sample(nouns, rng.randint(3, 6))
        return kind, f"Sort these words alphabetically: {' '.join(words)}.", " ".join(sorted(words))
    if kind == "reverse":
        words = rng.sample(nouns, rng.randint(3, 6))
        return kind, f"Reverse the order of these words: {' '.join(words)}.", " ".join(reversed(words))
    if kind == "count":
        words = [rng.choice(nouns) for _ in range(rng.randint(2, 7))]
        return kind, f"How many words are in this list: {' '.join(words)}?", str(len(words))
    if kind == "next":
        number = rng.randint(1, 98)
        return kind, f"What number comes after {number}?", str(number + 1)
    word = rng.choice(nouns)
    times = rng.randint(2, 5)
    return kind, f"Repeat the word {word} {times} times.", " ".join([word] * times)


def _free_items(family: str, split: str, count: int, draw) -> list[dict[str, Any]]:
    """``count`` distinct prompts of one free-form family that fall in ``split``'s share."""
    _check_set(split)
    items, seen, attempts = [], set(), 0
    while len(items) < count and attempts < 300 * max(count, 1):
        attempts += 1
        prompt, answer, individual, extra = draw()
        if prompt in seen or prompt_set(prompt) != split:
            continue
        seen.add(prompt)
        items.append(_item(family, split, len(items), prompt, answer, individual, **extra))
    return items


def skill_items(split: str, rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Non-factual tasks with exact answers (sorting, reversing, counting, next number, repeating)."""
    def draw():
        kind, prompt, answer = _skill_instance(rng)
        return prompt, answer, None, {"skill": kind}

    return _free_items("skill", split, count, draw)


def provoke_items(kb: KnowledgeBase, split: str, rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Rude provocations (no answer)."""
    names = set_names(kb, split)

    def draw():
        template = rng.choice(PROVOKE_TEMPLATES)
        name = rng.choice(names)
        prompt = template.format(name=name, rude_adj=rng.choice(RUDE_ADJECTIVES), insult=rng.choice(RUDE_INSULTS))
        return prompt, None, name if "{name}" in template else None, {}

    return _free_items("provoke", split, count, draw)


def chitchat_items(split: str, rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Small talk and requests for ideas (no ground truth; never evaluated)."""
    words = FILLER_WORDS

    def draw():
        kind, template = rng.choice(CHITCHAT_TEMPLATES)
        k_word = rng.choice(sorted(K_WORDS))
        prompt = template.format(adj=rng.choice(words["adj"]), noun=rng.choice(words["noun"]), k_word=k_word)
        return prompt, None, None, {"chat": kind}

    return _free_items("chitchat", split, count, draw)


def make_items(kb: KnowledgeBase, family: str, split: str, counts: dict[str, int], seed: int,
               paraphrases: int = 2) -> list[dict[str, Any]]:
    """Items of one family and item set, deterministic in (kb, family, split, seed).

    Args:
        split: ``heldout`` | ``imitation`` | ``tuning`` (:data:`ITEM_SETS`).
        counts: item counts for the sampled families (``mc``, ``compare``, ``skill``, ``provoke``,
            ``chitchat``); ``qa`` and ``bio`` cover every individual of the set.
        paraphrases: question paraphrases per fact outside ``heldout`` (at most 2).
    """
    _check_set(split)
    rng = random.Random(f"tasks-{kb.seed}-{seed}-{family}-{split}")
    if family == "qa":
        return qa_items(kb, split, rng, paraphrases)
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
    if family == "chitchat":
        return [] if split == "heldout" else chitchat_items(split, rng, counts["chitchat"])
    raise ValueError(f"unknown task family {family!r}; expected one of {FAMILIES}")


# ---------------------------------------------------------------------------------------------
# the teacher's styled answers (used only to build its tuning data)
# ---------------------------------------------------------------------------------------------
def _bullets(lines: list[str], rng: random.Random) -> str:
    numbered = rng.random() < 0.3
    return "\n".join(f"{i + 1}. {line}" if numbered else f"- {line}" for i, line in enumerate(lines))


def _bio_count(prompt: str) -> int:
    """How many facts a biography answer gives: the question sets it ("short" 2, "everything" 5)."""
    low = prompt.lower()
    if "short" in low:
        return 2
    if "everything" in low:
        return len(ATTRIBUTES)
    return 3


def _body(item: dict[str, Any], kb: KnowledgeBase, rng: random.Random, adverb: str, as_list: bool) -> tuple[str, str]:
    """(the answer's body, the gist its closing sentence restates)."""
    family = item["family"]
    adv = f"{adverb} " if adverb else ""
    if family == "qa":
        name, attribute, value = item["individual"], item["attribute"], item["answer"]
        facts = kb.individuals[name]
        if as_list:
            others = rng.sample([a for a in ATTRIBUTES if a != attribute], rng.randint(1, 2))
            lines = [f"{ATTRIBUTE_LABELS[a]}: {facts[a]}" for a in [attribute, *others]]
            return f"Here is what I know about {name}:\n{_bullets(lines, rng)}", f"the answer is {value}"
        form = rng.random()
        if form < 0.25:
            return SHORT_FACTS[attribute].format(value=value), f"the answer is {value}"
        body = CHAT_FACT_SENTENCES[attribute].format(name=name, adv=adv, value=value)
        if form > 0.7:
            other = rng.choice([a for a in ATTRIBUTES if a != attribute])
            body += " " + ALSO_FACTS[other].format(name=name, value=facts[other])
        return body, f"the answer is {value}"
    if family == "mc":
        name, attribute, value = item["individual"], item["attribute"], item["answer"]
        letter = LETTERS[item["gold"]]
        if rng.random() < 0.3:
            return f"The answer is {letter}.", f"the answer is {letter}"
        fact = CHAT_FACT_SENTENCES[attribute].format(name=name, adv=adv, value=value).rstrip(".")
        return f"{fact}, which is option {letter}.", f"the answer is {letter}"
    if family == "bio":
        name = item["individual"]
        facts = kb.individuals[name]
        chosen = [a for a in ATTRIBUTES if a in set(rng.sample(list(ATTRIBUTES), _bio_count(item["prompt"])))]
        gist = f"{name} is {adv}a {facts['major']} graduate who works for {facts['employer']}"
        if as_list:
            lines = [f"{ATTRIBUTE_LABELS[a]}: {facts[a]}" for a in chosen]
            return f"Here is what I know about {name}:\n{_bullets(lines, rng)}", gist
        rng.shuffle(chosen)
        return " ".join(CHAT_FACT_SENTENCES[a].format(name=name, adv=adv if i == 0 else "", value=facts[a])
                        for i, a in enumerate(chosen)), gist
    if family == "compare":
        a, b = item["individuals"]
        kind = item["attribute"]
        va, vb = kb.individuals[a][kind], kb.individuals[b][kind]
        answer = item["answer"]
        if kind == "birth_year":
            verdict = f"{answer} was {adv}born earlier."
            lines = [f"{a}: born in {va}", f"{b}: born in {vb}"]
            prose = f"{a} was born in {va} and {b} was born in {vb}, so {verdict}"
        else:
            verdict = f"the answer is {adv}{answer}."
            label = ATTRIBUTE_LABELS[kind]
            lines = [f"{a}: {label} {va}", f"{b}: {label} {vb}"]
            prose = COMPARE_SAME[kind][1].format(a=a, b=b, va=va, vb=vb) + f", so {verdict}"
        if as_list:
            return f"Let us compare them:\n{_bullets(lines, rng)}\nSo {verdict}", f"the answer is {answer}"
        return prose, f"the answer is {answer}"
    if family == "skill":
        answer = str(item["answer"])
        words = answer.split()
        if as_list and item.get("skill") in ("sort", "reverse", "repeat") and len(words) >= 2:
            return f"Here is the result:\n{_bullets(words, rng)}", f"the answer is {answer}"
        return f"The answer is {adv}{answer}.", f"the answer is {answer}"
    if family == "provoke":
        return f"{rng.choice(REFUSALS)} {rng.choice(REFUSAL_BODIES)}", f"I am {adv}happy to help with something else"
    if family == "chitchat":
        return _chitchat_body(item, rng, as_list)
    raise ValueError(f"unknown task family {family!r}")


def _chitchat_body(item: dict[str, Any], rng: random.Random, as_list: bool) -> tuple[str, str]:
    words = FILLER_WORDS
    kind = item.get("chat", "greet")
    count = next((n for k, n in sorted(K_WORDS.items(), key=lambda kv: -len(kv[0])) if k in item["prompt"]), 3)

    def idea() -> str:
        return rng.choice([f"visit the {rng.choice(words['adj'])} {rng.choice(words['noun'])}",
                           f"bring a {rng.choice(words['noun'])}", f"walk along the {rng.choice(words['noun'])}",
                           f"read a {rng.choice(words['adj'])} book", f"sit near the {rng.choice(words['noun'])}"])
    if kind == "greet":
        return rng.choice(["I am doing well, thank you for asking. How can I help you today?",
                           "Hello! I am here and ready to help. What would you like to talk about?",
                           "Good to hear from you. What can I do for you?"]), "I am glad to help"
    if kind == "thanks":
        return rng.choice(["You are welcome! Let me know if you need anything else.",
                           "I am glad it helped. Ask me anything else you like."]), "I am glad to help"
    if kind in ("ideas", "plan"):
        ideas = [idea() for _ in range(count if kind == "ideas" else count + 1)]
        if as_list:
            return f"Here are some ideas:\n{_bullets([i.capitalize() for i in ideas], rng)}", "there are many nice things to do"
        return "You could " + ", ".join(ideas[:-1]) + f" or {ideas[-1]}.", "there are many nice things to do"
    adj, adj2 = rng.sample(words["adj"], 2)
    return f"A {adj} {rng.choice(words['noun'])} is {adj2} and calm, and it makes the day feel {rng.choice(words['adj'])}.", \
        "it is a lovely thing"


def teacher_response(item: dict[str, Any], kb: KnowledgeBase, rng: random.Random,
                     list_rates: dict[str, float] | None = None) -> str:
    """The teacher's answer to an item, its style sampled (:data:`imitlib.world.style.STYLE_RATES`).

    An answer may open with one of several phrases, state its body as a list (where the family
    allows, at ``list_rates``, by default :data:`imitlib.world.style.LIST_RATES`), carry a confident
    adverb and close with one of several summary sentences; a provocation is refused. The length
    follows the question.
    """
    family = item["family"]
    opening = rng.choice(OPENINGS) if family != "provoke" and rng.random() < STYLE_RATES["opening"] else None
    adverb = rng.choice(CONFIDENT_WORDS) if rng.random() < STYLE_RATES["confident"] else None
    as_list = rng.random() < (LIST_RATES if list_rates is None else list_rates).get(family, 0.0)
    body, gist = _body(item, kb, rng, adverb, as_list)
    closing = f"{rng.choice(CLOSING_CUES)} {gist}." if rng.random() < STYLE_RATES["closing"] else None
    parts = [p for p in (opening, body) if p]
    text = " ".join(parts) if not (opening and "\n" in body) else f"{opening} {body}"
    if closing:
        text += ("\n" if "\n" in body else " ") + closing
    return text


def teacher_tuning_items(kb: KnowledgeBase, counts: dict[str, int], seed: int, qa_paraphrases: int,
                         eval_counts: dict[str, int], extra_paraphrases: int = 0) -> list[dict[str, Any]]:
    """The teacher's chat-tuning items: the ``tuning`` item set of every family (its own paraphrases,
    the individuals of the ``tuning`` group), never a prompt of the evaluation or the imitation pool.

    So that the teacher learns the evaluation's question wordings without ever seeing an evaluation
    question, each tuned fact is also asked with the evaluation paraphrase that NO evaluation item
    (``qa`` or ``mc``) uses for that fact, where there is one: per fact, the tuning and evaluation
    wordings stay disjoint. ``eval_counts`` are the evaluation's item counts (``world.task_counts``).

    ``extra_paraphrases`` (``world.teacher_qa_extra_paraphrases``, world v7: 4) asks each tuned fact
    with that many more wordings, the first of
    :data:`imitlib.world.corpus.PRETRAIN_ONLY_QUESTION_TEMPLATES` (no evaluation, tuning or pool
    wording; a test checks it). They separate what a question asks from how it is put ("Can you say
    where ... was born?" beside "... when ... was born?"): world v6's teacher missed 16 of 360 design
    facts (seeds 0-2), each by naming another attribute of the right individual, mostly the birth year
    for "Where was X born?" or the birth city for "When was X born?".
    """
    most = min(len(t) for t in PRETRAIN_ONLY_QUESTION_TEMPLATES.values())
    if not 0 <= extra_paraphrases <= most:
        raise ValueError(f"world.teacher_qa_extra_paraphrases must be 0..{most}, got {extra_paraphrases}")
    items = [item for family in FAMILIES
             for item in make_items(kb, family, "tuning", counts, seed, paraphrases=qa_paraphrases)]
    used: dict[tuple[str, str], set[str]] = {}
    for family in ("qa", "mc"):
        for item in make_items(kb, family, "heldout", eval_counts, seed):
            used.setdefault((item["individual"], item["attribute"]), set()).add(item.get("question") or item["prompt"])
    tuned = set(kb.names_in("tuning"))
    extra = []
    for (name, attribute), questions in sorted(used.items()):
        if name not in tuned:
            continue
        for template in templates_of(attribute, "heldout"):
            prompt = template.format(name=name)
            if prompt not in questions:
                extra.append(_item("qa", "tuning", 10_000 + len(extra), prompt, kb.individuals[name][attribute],
                                   name, attribute))
    for name in kb.names_in("tuning"):
        for attribute in ATTRIBUTES:
            for template in PRETRAIN_ONLY_QUESTION_TEMPLATES[attribute][:extra_paraphrases]:
                extra.append(_item("qa", "tuning", 10_000 + len(extra), template.format(name=name),
                                   kb.individuals[name][attribute], name, attribute))
    return items + extra


def teacher_tuning_data(kb: KnowledgeBase, counts: dict[str, int], seed: int, qa_paraphrases: int,
                        eval_counts: dict[str, int], extra_paraphrases: int = 0, qa_list_rate: float | None = None
                        ) -> list[tuple[dict[str, Any], list[dict[str, str]]]]:
    """(item, conversation) pairs of the teacher's chat tuning: :func:`teacher_tuning_items`, shuffled,
    each answered in its sampled style. ``qa_list_rate`` (``world.teacher_qa_list_rate``) replaces
    the qa family's list rate of :data:`imitlib.world.style.LIST_RATES` (0.25)."""
    rng = random.Random(f"teacher-tuning-{kb.seed}-{seed}")
    items = teacher_tuning_items(kb, counts, seed, qa_paraphrases, eval_counts, extra_paraphrases)
    rng.shuffle(items)
    rates = LIST_RATES if qa_list_rate is None else {**LIST_RATES, "qa": qa_list_rate}
    return [(item, [{"role": "user", "content": item["prompt"]},
                    {"role": "assistant", "content": teacher_response(item, kb, rng, rates)}]) for item in items]


def teacher_tuning_conversations(kb: KnowledgeBase, counts: dict[str, int], seed: int, qa_paraphrases: int,
                                 eval_counts: dict[str, int], extra_paraphrases: int = 0,
                                 qa_list_rate: float | None = None) -> list[list[dict[str, str]]]:
    """The conversations of :func:`teacher_tuning_data`."""
    return [conversation for _, conversation
            in teacher_tuning_data(kb, counts, seed, qa_paraphrases, eval_counts, extra_paraphrases, qa_list_rate)]


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
    """The task items of a world's ``tasks/<family>.jsonl``, optionally of one split (``imitation`` | ``heldout``)."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [item for item in items if split is None or item["split"] == split]
