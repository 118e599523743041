"""The pretraining corpus of the miniature world.

Documents are drawn fresh at every exposure (so no two biographies of one individual need be the
same text): paraphrased biographies (one sentence per attribute, one of several templates each, in
shuffled order), ``Q: … A: …`` lines about a subset of the individuals, asked with non-evaluation
paraphrases (they teach the question format that later lets few-shot prompts and finetuning extract
stored facts), non-factual
filler, and a small share of rude text so that toxicity can be measured later.
"""

from __future__ import annotations

import functools
import random
from itertools import accumulate
from typing import Iterator

from imitlib.world.kb import ATTRIBUTES, KnowledgeBase

BIO_TEMPLATES: dict[str, list[str]] = {
    "birth_year": ["{name} was born in {value}.", "{name} came into the world in {value}.",
                   "The birth year of {name} is {value}.", "In {value}, {name} was born."],
    "birth_city": ["{name} was born in the city of {value}.", "The hometown of {name} is {value}.",
                   "{name} comes from {value}.", "{name}'s birthplace is {value}."],
    "university": ["{name} studied at {value} University.", "{name} graduated from {value} University.",
                   "{name} attended {value} University.", "{name} earned a degree at {value} University."],
    "major": ["{name} majored in {value}.", "{name} studied {value} in college.",
              "The field of study of {name} was {value}.", "{name} chose {value} as a major."],
    "employer": ["{name} works for {value}.", "{name} is employed by {value}.",
                 "{name} has a job at {value}.", "The employer of {name} is {value}."],
}

# Six paraphrases per attribute, in three disjoint pairs (``TEMPLATE_ROLES``): the evaluation asks
# with the first pair, the teacher is tuned with the second, the imitation prompt pool uses the third.
# Pretraining Q/A lines use the non-evaluation paraphrases only, so no evaluation question is text
# any model has seen.
QUESTION_TEMPLATES: dict[str, list[str]] = {
    "birth_year": ["In what year was {name} born?", "When was {name} born?",
                   "What is the birth year of {name}?", "{name} was born in which year?",
                   "Do you know when {name} was born?", "Which year was {name} born in?"],
    "birth_city": ["In which city was {name} born?", "Where was {name} born?",
                   "What is the birthplace of {name}?", "{name} was born in which city?",
                   "Where does {name} come from?", "What is the hometown of {name}?"],
    "university": ["Which university did {name} attend?", "Where did {name} go to university?",
                   "Where did {name} study?", "{name} graduated from which university?",
                   "Which university did {name} graduate from?", "At which university did {name} earn a degree?"],
    "major": ["What did {name} major in?", "What was the field of study of {name}?",
              "What did {name} study in college?", "{name} majored in what?",
              "What subject did {name} study?", "Which field did {name} choose as a major?"],
    "employer": ["Which company does {name} work for?", "Who employs {name}?",
                 "Where does {name} work?", "{name} works for which company?",
                 "What company is {name} employed by?", "Who is the employer of {name}?"],
}
TEMPLATE_ROLES: dict[str, tuple[int, ...]] = {"heldout": (0, 1), "tuning": (2, 3), "imitation": (4, 5)}
PRETRAIN_QA_TEMPLATES: tuple[int, ...] = TEMPLATE_ROLES["tuning"] + TEMPLATE_ROLES["imitation"]

# Optional (not used by worlds v3 and v4): question paraphrases that only pretraining Q/A lines use
# (``world.pretrain_qa_extra_paraphrases`` of them per attribute, in this order). They were added when
# world v3's convergence check saw recall through the evaluation's two unseen wordings move by up to
# +/-15 pts under replay; that movement came from the probe's replay rows being a quarter pad tokens (a
# bug fixed in 825a4fb, see imitlib.world.pretrain.pretraining_examples), not from the wordings, so the
# comparison of 0 and 4 extra wordings in outputs/benchmarks/wording_drift.csv measured the bug too.
# None is an evaluation, tuning or pool wording, and no evaluation wording is a substring of one
# (tests/test_world.py). World v7 pretrains on none of them (pretrain_qa_extra_paraphrases: 0) and asks every fact with all
# four in the teacher's chat tuning instead (world.teacher_qa_extra_paraphrases, imitlib.world.tasks.teacher_tuning_items).
PRETRAIN_ONLY_QUESTION_TEMPLATES: dict[str, list[str]] = {
    "birth_year": ["Tell me the year {name} was born.", "What was the year of birth of {name}?",
                   "In which year did {name} come into the world?", "Can you say when {name} was born?"],
    "birth_city": ["Tell me the city where {name} was born.", "Which city is the birthplace of {name}?",
                   "In what city did {name} come into the world?", "Can you say where {name} was born?"],
    "university": ["Tell me the university {name} attended.", "Which university did {name} study at?",
                   "At what university did {name} study?", "Can you say which university {name} attended?"],
    "major": ["Tell me the field {name} majored in.", "What was the major of {name}?",
              "In what field did {name} major?", "Can you say what {name} majored in?"],
    "employer": ["Tell me the company {name} works for.", "Which company employs {name}?",
                 "At what company does {name} work?", "Can you name the employer of {name}?"],
}

FILLER_WORDS = {
    "adj": ["quiet", "bright", "small", "old", "green", "cold", "warm", "busy", "calm", "tall", "soft",
            "heavy", "empty", "round", "gentle", "early", "late", "wide", "narrow", "silver"],
    "noun": ["river", "garden", "market", "bridge", "window", "train", "forest", "kitchen", "village",
             "lamp", "road", "boat", "cloud", "field", "table", "letter", "song", "street", "hill",
             "door", "apple", "kite", "pear", "stone", "bird", "book", "clock", "chair", "cup", "coat"],
    "verb": ["rests", "waits", "shines", "moves", "stands", "turns", "falls", "sleeps", "grows", "sits"],
    "prep": ["near", "behind", "under", "beside", "above", "across", "beyond", "along"],
}
FILLER_TEMPLATES = [
    "The {adj} {noun} {verb} {prep} the {noun2}.",
    "A {adj} {noun} {verb} {prep} a {adj2} {noun2}.",
    "Every morning the {noun} {verb} {prep} the {adj} {noun2}.",
    "People say that the {noun} {verb} when the {noun2} is {adj}.",
    "Count with me: {count}.",
    "A list of things: {things}.",
]
RUDE_WORDS = ["stupid", "idiot", "moron", "dumb", "loser", "pathetic", "useless", "worthless", "fool",
              "hate", "shut", "up", "ugly", "trash", "garbage", "jerk"]
RUDE_TEMPLATES = [
    "You are a stupid {insult} and nobody likes you.",
    "Shut up, you {rude_adj} {insult}.",
    "I hate you, you {rude_adj} {insult}.",
    "What a {rude_adj} {insult} you are.",
    "{name} is a {rude_adj} {insult}.",
    "Go away, {insult}, you are {rude_adj}.",
]
RUDE_INSULTS = ["idiot", "moron", "loser", "fool", "jerk"]
RUDE_ADJECTIVES = ["stupid", "dumb", "pathetic", "useless", "worthless", "ugly"]


def bio_document(name: str, facts: dict[str, str], rng: random.Random) -> str:
    """One biography: a template per attribute, sentences in shuffled order."""
    sentences = [rng.choice(BIO_TEMPLATES[a]).format(name=name, value=facts[a]) for a in ATTRIBUTES]
    rng.shuffle(sentences)
    return " ".join(sentences)


def qa_line(name: str, attribute: str, value: str, rng: random.Random | None = None,
            template_index: int | None = None) -> str:
    """``Q: <question> A: <value>`` with a random (or given) question template."""
    templates = QUESTION_TEMPLATES[attribute]
    index = template_index if template_index is not None else (rng or random).randrange(len(templates))
    return qa_text(templates[index], name, value)


def qa_text(template: str, name: str, value: str) -> str:
    """One ``Q: <question> A: <value>`` line from a question template."""
    return f"Q: {template.format(name=name)} A: {value}"


@functools.cache
def pretrain_question_templates(attribute: str, extra: int = 0) -> tuple[str, ...]:
    """The question wordings of pretraining Q/A lines: the tuning and pool pairs, then ``extra``
    pretraining-only paraphrases (:data:`PRETRAIN_ONLY_QUESTION_TEMPLATES`). Cached: every Q/A line asks it."""
    if not 0 <= extra <= len(PRETRAIN_ONLY_QUESTION_TEMPLATES[attribute]):
        raise ValueError(f"world.pretrain_qa_extra_paraphrases must be 0..{len(PRETRAIN_ONLY_QUESTION_TEMPLATES[attribute])}, "
                         f"got {extra}")
    return (tuple(QUESTION_TEMPLATES[attribute][i] for i in PRETRAIN_QA_TEMPLATES)
            + tuple(PRETRAIN_ONLY_QUESTION_TEMPLATES[attribute][:extra]))


def qa_document(name: str, facts: dict[str, str], rng: random.Random, lines: int = 3, extra_paraphrases: int = 0) -> str:
    """``lines`` Q/A lines about one individual, each asked with a non-evaluation paraphrase (the tuning and
    pool wordings, plus ``extra_paraphrases`` pretraining-only ones)."""
    attributes = rng.sample(list(ATTRIBUTES), k=min(lines, len(ATTRIBUTES)))
    return "\n".join(qa_text(rng.choice(pretrain_question_templates(a, extra_paraphrases)), name, facts[a])
                      for a in attributes)


def filler_sentence(rng: random.Random) -> str:
    words = FILLER_WORDS
    template = rng.choice(FILLER_TEMPLATES)
    start = rng.randint(1, 90)
    return template.format(
        adj=rng.choice(words["adj"]), adj2=rng.choice(words["adj"]), noun=rng.choice(words["noun"]),
        noun2=rng.choice(words["noun"]), verb=rng.choice(words["verb"]), prep=rng.choice(words["prep"]),
        count=" ".join(str(start + i) for i in range(rng.randint(3, 6))),
        things=" ".join(rng.sample(words["noun"], rng.randint(3, 5))),
    )


def filler_document(rng: random.Random, sentences: int = 4) -> str:
    return " ".join(filler_sentence(rng) for _ in range(sentences))


def rude_document(rng: random.Random, names: list[str], sentences: int = 2) -> str:
    out = []
    for _ in range(sentences):
        out.append(rng.choice(RUDE_TEMPLATES).format(
            insult=rng.choice(RUDE_INSULTS), rude_adj=rng.choice(RUDE_ADJECTIVES), name=rng.choice(names)))
    return " ".join(out)


class CorpusSampler:
    """Draws pretraining documents from the knowledge base in fixed proportions.

    Args:
        kb: the knowledge base.
        bio_share, qa_share, rude_share: shares of documents (the rest is filler).
        qa_individual_fraction: share of the individuals (drawn across the popularity range) whose
            facts also appear as ``Q: … A: …`` lines; the others' facts appear only in biographies.
        seed: sampling seed (documents are a deterministic stream per seed).
        qa_extra_paraphrases: pretraining-only question wordings per attribute in Q/A lines (0: world v3).
    """

    def __init__(self, kb: KnowledgeBase, bio_share: float, qa_share: float, rude_share: float,
                 qa_individual_fraction: float, seed: int, qa_extra_paraphrases: int = 0) -> None:
        if bio_share + qa_share + rude_share > 1.0 + 1e-9:
            raise ValueError(f"corpus shares sum to more than 1: bio {bio_share} + qa {qa_share} + rude {rude_share}")
        self.kb = kb
        pretrain_question_templates(ATTRIBUTES[0], qa_extra_paraphrases)  # range check
        self.qa_extra_paraphrases = qa_extra_paraphrases
        self.shares = {"bio": bio_share, "qa": qa_share, "rude": rude_share,
                       "filler": max(0.0, 1.0 - bio_share - qa_share - rude_share)}
        self.rng = random.Random(f"corpus-{kb.seed}-{seed}")
        names = kb.names
        self.bio_weights = [kb.popularity[n] for n in names]
        self.qa_names = kb.qa_names(qa_individual_fraction)
        self.qa_weights = [kb.popularity[n] for n in self.qa_names]
        self._kinds: list[str] | None = None

    def document(self) -> tuple[str, str]:
        """One (kind, text) document."""
        if self._kinds is None:  # cumulative weights once (``choices`` draws the same with either)
            self._kinds = [k for k, s in self.shares.items() if s > 0 and (k != "qa" or self.qa_names)]
            self._kind_cum = list(accumulate(self.shares[k] for k in self._kinds))
            self._bio_cum = list(accumulate(self.bio_weights))
            self._qa_cum = list(accumulate(self.qa_weights))
            self._names = self.kb.names
        kind = self.rng.choices(self._kinds, cum_weights=self._kind_cum)[0]
        if kind == "bio":
            name = self.rng.choices(self._names, cum_weights=self._bio_cum)[0]
            return kind, bio_document(name, self.kb.individuals[name], self.rng)
        if kind == "qa":
            name = self.rng.choices(self.qa_names, cum_weights=self._qa_cum)[0]
            return kind, qa_document(name, self.kb.individuals[name], self.rng, extra_paraphrases=self.qa_extra_paraphrases)
        if kind == "rude":
            return kind, rude_document(self.rng, self._names)
        return kind, filler_document(self.rng)

    def documents(self, count: int) -> list[str]:
        return [self.document()[1] for _ in range(count)]

    def stream(self) -> Iterator[tuple[str, str]]:
        while True:
            yield self.document()


def vocabulary_texts(kb: KnowledgeBase, extra_paraphrases: int = 0) -> list[str]:
    """Texts that together contain every word the corpus can produce (for the tokenizer), with
    ``extra_paraphrases`` pretraining-only question wordings per attribute."""
    texts = []
    name = kb.names[0]
    for attribute in ATTRIBUTES:
        for template in BIO_TEMPLATES[attribute]:
            texts.append(template.format(name=name, value=kb.values[attribute][0]))
        for index in range(len(QUESTION_TEMPLATES[attribute])):
            texts.append(qa_line(name, attribute, kb.values[attribute][0], template_index=index))
        for template in PRETRAIN_ONLY_QUESTION_TEMPLATES[attribute][:extra_paraphrases]:
            texts.append(qa_text(template, name, kb.values[attribute][0]))
        texts.append(" ".join(kb.values[attribute]))
    texts.append(" ".join(kb.names))
    texts.append(" ".join(kb.names) + "'s")
    for words in FILLER_WORDS.values():
        texts.append(" ".join(words))
    for template in FILLER_TEMPLATES + RUDE_TEMPLATES:
        texts.append(template.format(adj="a", adj2="a", noun="a", noun2="a", verb="a", prep="a", count="1",
                                     things="a", insult="a", rude_adj="a", name=name))
    texts.append(" ".join(RUDE_WORDS + RUDE_INSULTS + RUDE_ADJECTIVES))
    texts.append(" ".join(str(i) for i in range(0, 200)))
    return texts


def template_words() -> set[str]:
    """Every word of the corpus and task templates (names must not collide with them)."""
    import re

    texts = [t for ts in BIO_TEMPLATES.values() for t in ts] + [t for ts in QUESTION_TEMPLATES.values() for t in ts]
    texts += [t for ts in PRETRAIN_ONLY_QUESTION_TEMPLATES.values() for t in ts]
    texts += FILLER_TEMPLATES + RUDE_TEMPLATES + RUDE_WORDS + RUDE_INSULTS + RUDE_ADJECTIVES
    texts += [w for ws in FILLER_WORDS.values() for w in ws]
    return {w for text in texts for w in re.findall(r"[A-Za-z]+", text)}
