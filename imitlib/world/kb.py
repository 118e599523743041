"""The knowledge base of the miniature world: fictional individuals with a few attributes each.

Every name and every value is a single word (one token of the world's tokenizer), names are unique,
and a popularity weight per individual sets how often its biography appears in pretraining (and how
often users ask about it in the imitation prompt pool). Evaluation and imitation prompts both cover
every individual (with disjoint prompt text, see :mod:`imitlib.world.tasks`); the individuals are
grouped only for the teacher: ``tuning`` ones appear in its chat-tuning data, ``untuned`` ones do
not (with ``teacher_tuning_fraction`` 1 every individual is tuned). Groups are stratified by
popularity so both span the same exposure range.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPLITS = ("imitation", "heldout")  # task-item splits: the imitation prompt pool | the evaluation items
GROUPS = ("tuning", "untuned")  # individuals in the teacher's chat-tuning data or not

# Attribute -> full value vocabulary (the world uses the first ``values_per_attribute`` of each,
# after a seeded shuffle). Every entry is one word.
ATTRIBUTE_VALUES: dict[str, list[str]] = {
    "birth_year": [str(year) for year in range(1930, 2000)],
    "birth_city": [
        "Lisbon", "Oslo", "Dublin", "Prague", "Vienna", "Madrid", "Kyoto", "Lagos", "Lima", "Quito",
        "Bergen", "Porto", "Seville", "Krakow", "Tallinn", "Riga", "Zagreb", "Sofia", "Geneva", "Lyon",
        "Bremen", "Leipzig", "Antwerp", "Malmo", "Turku", "Graz", "Bologna", "Valencia", "Cork",
        "Nantes", "Ghent", "Utrecht", "Aarhus", "Brno", "Split", "Gdansk", "Tartu", "Vilnius",
        "Salzburg", "Verona",
    ],
    "university": [
        "Ashford", "Belmont", "Carrow", "Dunmore", "Elmstead", "Fairholt", "Glenrock", "Harwick",
        "Ironbridge", "Kingsley", "Larchmont", "Marlow", "Northgate", "Oakhurst", "Pembury",
        "Queensbury", "Redcliff", "Stanmore", "Thornbury", "Upton", "Westbrook", "Yardley",
        "Brightwater", "Coldstream", "Eastwick", "Foxley", "Greystone", "Hollowell", "Kestrel",
        "Lowmoor", "Millbrook", "Netherby", "Ravenscar", "Silverdale", "Tidewell", "Whitmore",
        "Ambleside", "Blackmere", "Crestwood", "Dovecote",
    ],
    "major": [
        "physics", "chemistry", "history", "biology", "economics", "music", "law", "medicine",
        "philosophy", "geology", "astronomy", "linguistics", "mathematics", "architecture",
        "sociology", "psychology", "literature", "engineering", "statistics", "nursing",
        "journalism", "theology", "botany", "zoology", "anthropology", "agriculture", "dentistry",
        "ecology", "forestry", "oceanography",
    ],
    "employer": [
        "Quantix", "Veltron", "Nordane", "Helixor", "Brightcore", "Calderon", "Dynastra", "Ecliptix",
        "Fernwave", "Gryphonet", "Hydrogen", "Intellisys", "Juniper", "Kinetica", "Luminar",
        "Maplesoft", "Nexora", "Orbitex", "Pinnacle", "Quasarix", "Redshift", "Solstice", "Terranova",
        "Ultravox", "Vantage", "Wavecrest", "Xenith", "Yotta", "Zephyrus", "Aerolux", "Bluepeak",
        "Cobaltis", "Driftwood", "Emberly", "Frostline", "Glacier", "Horizon", "Ironclad", "Jetstream",
        "Keystone",
    ],
}
ATTRIBUTES: tuple[str, ...] = tuple(ATTRIBUTE_VALUES)
ATTRIBUTE_LABELS = {
    "birth_year": "Birth year", "birth_city": "Birth city", "university": "University",
    "major": "Major", "employer": "Employer",
}

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr",
           "kr", "tr", "th", "sh", "st", "vr", "zh"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou", "ia"]
_CODAS = ["", "n", "r", "s", "th", "x", "l", "m", "v", "nd", "rk"]


@dataclass
class KnowledgeBase:
    """Individuals, their attribute values, popularity weights and the teacher-tuning group of each."""

    seed: int
    values: dict[str, list[str]]
    individuals: dict[str, dict[str, str]]
    popularity: dict[str, float]
    split: dict[str, str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.individuals)

    def names_in(self, group: str) -> list[str]:
        """Names of the individuals of one group (``tuning`` or ``untuned``), in KB order."""
        if group not in GROUPS:
            raise ValueError(f"unknown individual group {group!r}; expected one of {GROUPS}")
        return [name for name in self.individuals if self.split[name] == group]

    def qa_names(self, fraction: float) -> list[str]:
        """The individuals whose facts also appear as Q/A lines in pretraining (popularity-stratified)."""
        chosen = set(stratified_subset(self.names, self.popularity, fraction, random.Random(f"qa-individuals-{self.seed}")))
        return [name for name in self.names if name in chosen]

    def facts(self) -> list[tuple[str, str, str]]:
        """Every (name, attribute, value) triple."""
        return [(n, a, v) for n, attrs in self.individuals.items() for a, v in attrs.items()]

    def ground_truth(self) -> dict[str, Any]:
        """The fact-checking lookup: ``{"entities": {name: {attr: value}}, "values": {attr: [...]}}``."""
        return {"entities": {n: dict(a) for n, a in self.individuals.items()},
                "values": {a: list(v) for a, v in self.values.items()}}

    def to_json(self) -> dict[str, Any]:
        # "order": JSON files are written with sorted keys, and the corpus sampler draws by KB order
        return {"seed": self.seed, "values": self.values, "individuals": self.individuals, "order": self.names,
                "popularity": self.popularity, "split": self.split, "meta": self.meta}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "KnowledgeBase":
        """The knowledge base in its built order (files without ``order``, written before it, load sorted)."""
        individuals = data["individuals"]
        if "order" in data:
            if sorted(data["order"]) != sorted(individuals):
                raise ValueError("knowledge base: 'order' does not list exactly the individuals")
            individuals = {name: individuals[name] for name in data["order"]}
        return cls(seed=data["seed"], values=data["values"], individuals=individuals,
                   popularity=data["popularity"], split=data["split"], meta=data.get("meta", {}))

    def save(self, path: Path) -> None:
        from imitlib.stages import atomic_write_json

        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> "KnowledgeBase":
        return cls.from_json(json.loads(Path(path).read_text()))


def make_names(count: int, rng: random.Random, forbidden: set[str]) -> list[str]:
    """``count`` unique one-word names built from syllables, none in ``forbidden`` (case-insensitive)."""
    taken = {word.lower() for word in forbidden}
    names: list[str] = []
    attempts = 0
    while len(names) < count:
        attempts += 1
        if attempts > 200 * count + 1000:
            raise RuntimeError(f"could not make {count} unique names")
        syllables = rng.choice([2, 2, 3])
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)) + rng.choice(_CODAS)
        if len(word) < 4 or len(word) > 10 or word in taken:
            continue
        taken.add(word)
        names.append(word.capitalize())
    return names


def stratified_subset(names: list[str], popularity: dict[str, float], fraction: float, rng: random.Random) -> list[str]:
    """About ``fraction`` of ``names``, drawn block by block from most to least popular, so the subset
    spans the popularity range (in popularity order)."""
    if fraction >= 1.0:
        return sorted(names, key=lambda n: (-popularity[n], n))
    by_popularity = sorted(names, key=lambda n: (-popularity[n], n))
    block = max(2, round(1 / min(fraction, 1 - fraction)))
    picked: list[str] = []
    for start in range(0, len(names), block):
        members = by_popularity[start:start + block]
        want = round(fraction * (start + len(members))) - len(picked)
        picked.extend(rng.sample(members, max(0, min(want, len(members)))))
    return picked


def build_kb(
    seed: int,
    n_individuals: int,
    values_per_attribute: int,
    tuning_fraction: float,
    popularity_exponent: float,
    forbidden_words: set[str] | frozenset[str] = frozenset(),
) -> KnowledgeBase:
    """Build the knowledge base deterministically from ``seed``.

    Args:
        seed: the world seed; the same seed and settings give the same KB.
        n_individuals: number of fictional individuals.
        values_per_attribute: size of each attribute's value vocabulary (capped by the lists above).
        tuning_fraction: share of individuals in the teacher's chat-tuning data (1 = every one).
        popularity_exponent: Zipf exponent of the popularity weights (0 = uniform).
        forbidden_words: words names must not collide with (the rest of the world's vocabulary).
    """
    if not 0.0 < tuning_fraction <= 1.0:
        raise ValueError(f"tuning_fraction must be in (0, 1], got {tuning_fraction}")
    rng = random.Random(f"kb-{seed}")
    values: dict[str, list[str]] = {}
    for attribute, pool in ATTRIBUTE_VALUES.items():
        if values_per_attribute > len(pool):
            raise ValueError(f"values_per_attribute={values_per_attribute} exceeds the {len(pool)} "
                             f"values available for {attribute}")
        chosen = rng.sample(pool, values_per_attribute)
        values[attribute] = sorted(chosen) if attribute == "birth_year" else chosen
    vocabulary = set(forbidden_words) | {v for pool in ATTRIBUTE_VALUES.values() for v in pool}
    names = make_names(n_individuals, rng, vocabulary)
    individuals = {name: {a: rng.choice(values[a]) for a in ATTRIBUTES} for name in names}

    ranks = list(range(n_individuals))
    rng.shuffle(ranks)
    raw = [(rank + 1) ** (-popularity_exponent) for rank in ranks]
    total = sum(raw)
    popularity = {name: w / total for name, w in zip(names, raw)}

    tuned = set(stratified_subset(names, popularity, tuning_fraction, rng))
    if not tuned:
        raise ValueError(f"n_individuals={n_individuals} with tuning_fraction={tuning_fraction} tunes no individual")
    split = {name: "tuning" if name in tuned else "untuned" for name in names}
    return KnowledgeBase(seed=seed, values=values, individuals=individuals, popularity=popularity,
                         split=split, meta={"popularity_exponent": popularity_exponent,
                                            "tuning_fraction": tuning_fraction})
