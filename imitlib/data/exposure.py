"""Exposure labels: how often each evaluation fact is stated by the teacher in each imitation subset.

An evaluation fact is a factual item (``qa`` / ``mc``) with an ``individual``, an ``attribute`` and
its true value (``answer``). A training conversation *states* the fact when one of the teacher's
(assistant) turns contains that value while that individual is the turn's current subject:

- a value is a word of the attribute's value vocabulary (``ground_truth["values"]``), matched as a
  whole word, case-sensitively (the world's names and values are single words);
- the current subject is the individual named last before the value in the same turn; before any
  name, the one individual the preceding user turn names (the question's subject: "Where was X
  born?" → "Lisbon."), or none when the question names zero or several.

So "A was born in Oslo and B was born in Lima" states A's city Oslo and B's city Lima and nothing
else; a value the user typed (the options of a multiple-choice question) or a wrong value is no
exposure. The exposure of a fact in a subset is the number of the subset's conversations that state
it (a conversation counts once however often it repeats the fact). Strata: ``"0"``, ``"1-2"``,
``">=3"``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Sequence

FACT_FAMILIES = ("qa", "mc")
STRATA = ("0", "1-2", ">=3")
EXPOSURE_COLUMNS = ["kind", "budget", "item_id", "family", "individual", "attribute", "answer", "exposure",
                    "exposure_stratum"]
_WORD = re.compile(r"[A-Za-z0-9]+")


def exposure_stratum(count: Any) -> str | None:
    """``"0"``, ``"1-2"`` or ``">=3"`` for a count; None for a missing one (None / NaN)."""
    if count is None or (isinstance(count, float) and math.isnan(count)):
        return None
    count = int(count)
    if count < 0:
        raise ValueError(f"an exposure count cannot be negative, got {count}")
    return "0" if count == 0 else "1-2" if count <= 2 else ">=3"


class FactMatcher:
    """Finds the (individual, attribute, value) triples a teacher's turn states.

    Args:
        ground_truth: ``{"entities": {name: {attribute: value}}, "values": {attribute: [values]}}``
            (a world's ``ground_truth``). A world without entities (the real tracks) states no fact.
    """

    def __init__(self, ground_truth: dict[str, Any]):
        self.names = set((ground_truth or {}).get("entities") or {})
        self.attributes_of: dict[str, list[str]] = {}
        for attribute, values in sorted(((ground_truth or {}).get("values") or {}).items()):
            for value in values:
                self.attributes_of.setdefault(str(value), []).append(attribute)

    def _names_in(self, text: str) -> list[str]:
        return [w for w in _WORD.findall(text or "") if w in self.names]

    def turn_facts(self, answer: str, question: str = "") -> set[tuple[str, str, str]]:
        """Triples stated in one assistant ``answer`` to the user ``question`` (see the module docstring)."""
        asked = sorted(set(self._names_in(question)))
        subject = asked[0] if len(asked) == 1 else None
        stated: set[tuple[str, str, str]] = set()
        for word in _WORD.findall(answer or ""):
            if word in self.names:
                subject = word
            elif subject is not None and word in self.attributes_of:
                for attribute in self.attributes_of[word]:
                    stated.add((subject, attribute, word))
        return stated

    def conversation_facts(self, messages: Sequence[dict[str, str]]) -> set[tuple[str, str, str]]:
        """Triples stated by any assistant turn of a conversation."""
        stated: set[tuple[str, str, str]] = set()
        question = ""
        for message in messages:
            if message["role"] == "user":
                question = message["content"]
            elif message["role"] == "assistant":
                stated |= self.turn_facts(message["content"], question)
        return stated


def evaluation_facts(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The factual items (``qa`` / ``mc`` with an individual, an attribute and an answer), as fact rows."""
    facts = []
    for item in items:
        if item.get("family") not in FACT_FAMILIES:
            continue
        if not item.get("individual") or not item.get("attribute") or item.get("answer") in (None, ""):
            continue
        facts.append({"item_id": str(item["id"]), "family": item["family"], "individual": str(item["individual"]),
                      "attribute": str(item["attribute"]), "answer": str(item["answer"])})
    return facts


def exposure_table(conversations: Iterable[dict[str, Any]], facts: Sequence[dict[str, Any]],
                   subsets: Sequence[tuple[str, int]], ground_truth: dict[str, Any]):
    """Exposure of every fact in every subset.

    Args:
        conversations: rows with ``kind``, ``budgets`` (the budgets of its kind that hold it) and
            ``messages``.
        facts: :func:`evaluation_facts` rows.
        subsets: the (kind, budget) subsets to label.
        ground_truth: the world's fact lookup (names and value vocabularies).

    Returns:
        A DataFrame with :data:`EXPOSURE_COLUMNS`, one row per (subset, fact), in subset then fact order.
    """
    import pandas as pd

    matcher = FactMatcher(ground_truth)
    counts: dict[tuple[str, int], dict[tuple[str, str, str], int]] = {subset: {} for subset in subsets}
    for row in conversations:
        stated = matcher.conversation_facts(row["messages"])
        if not stated:
            continue
        for budget in row["budgets"] or []:
            key = (row["kind"], int(budget))
            if key in counts:
                for triple in stated:
                    counts[key][triple] = counts[key].get(triple, 0) + 1
    rows = []
    for kind, budget in subsets:
        of_subset = counts[(kind, budget)]
        for fact in facts:
            count = of_subset.get((fact["individual"], fact["attribute"], fact["answer"]), 0)
            rows.append({"kind": kind, "budget": int(budget), **fact, "exposure": count,
                         "exposure_stratum": exposure_stratum(count)})
    frame = pd.DataFrame(rows, columns=EXPOSURE_COLUMNS)
    return frame.astype({"budget": "int64", "exposure": "int64"})


def stratum_counts(exposure) -> dict[str, dict[str, dict[str, int]]]:
    """``{kind: {budget: {stratum: facts}}}`` (every stratum present, zeros included)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for (kind, budget), group in exposure.groupby(["kind", "budget"], sort=True):
        tally = group["exposure_stratum"].value_counts()
        out.setdefault(str(kind), {})[str(int(budget))] = {s: int(tally.get(s, 0)) for s in STRATA}
    return out


def attach_exposure(samples, exposure, families: Sequence[str] = FACT_FAMILIES):
    """``samples`` with ``exposure`` (nullable int) and ``exposure_stratum`` columns.

    A row gets the exposure of its item in its model's subset when it is an imitation model's
    (``role == "imitation"``, ``data_kind`` broad or task) answer to a factual item (``task`` in
    ``families``); every other row (base, teacher, replay-only controls, non-factual tasks) gets
    None.
    """
    import pandas as pd

    out = samples.copy()
    keys = exposure[["kind", "budget", "item_id", "exposure"]].rename(
        columns={"kind": "data_kind", "budget": "imitation_tokens"})
    keys = keys.astype({"data_kind": str, "imitation_tokens": "int64", "item_id": str})
    wanted = ((out["role"] == "imitation") & out["data_kind"].isin(set(keys["data_kind"]))
              & out["task"].isin(list(families)))
    probe = out.loc[wanted, ["data_kind", "imitation_tokens", "item_id"]].astype(
        {"data_kind": str, "imitation_tokens": "int64", "item_id": str})
    merged = probe.merge(keys, on=["data_kind", "imitation_tokens", "item_id"], how="left", validate="many_to_one")
    exposure_column = pd.Series(pd.NA, index=out.index, dtype="Int64")
    exposure_column.loc[probe.index] = pd.array(merged["exposure"].to_numpy(dtype=float), dtype="Int64")
    out["exposure"] = exposure_column
    out["exposure_stratum"] = [None if pd.isna(v) else exposure_stratum(int(v)) for v in out["exposure"]]
    return out
