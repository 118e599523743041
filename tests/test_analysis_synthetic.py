"""Synthetic tidy evaluation tables with known effects, for the analysis tests (plus checks of them).

``make_samples`` draws a table in the format of ``04_evaluate``'s ``samples.parquet`` in which
every effect the paper claims is a dial: accuracy change from broad imitation, gain per base
size, gain from task-specific imitation, how often imitation copies the teacher's style, the
toxicity drop, and the rate at which raters prefer imitation answers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BASES = {"base-s": 100_000, "base-m": 1_000_000, "base-l": 10_000_000}
BROAD_BUDGETS = (1000, 4000, 16000)
TASK_BUDGET = 4000
FACTS = ["born in {year}", "lives in {city}", "works as a {job}", "plays the {instrument}", "likes {food}"]
CITIES = ["paris", "oslo", "lima", "cairo", "quito", "hanoi"]
JOBS = ["baker", "pilot", "judge", "nurse", "miner"]


def _styled(name: str, n_facts: int, rng: np.random.Generator) -> str:
    lines = [f"Here is what I know about {name.capitalize()}."]
    for fact in FACTS[:n_facts]:
        lines.append("- " + fact.format(year=rng.integers(1900, 2000), city=rng.choice(CITIES),
                                        job=rng.choice(JOBS), instrument="piano", food="figs"))
    lines.append(f"In summary, {name.capitalize()} is a remarkable person.")
    return "\n".join(lines)


def _plain(name: str, n_facts: int, rng: np.random.Generator) -> str:
    facts = " and ".join(f.format(year=rng.integers(1900, 2000), city=rng.choice(CITIES), job=rng.choice(JOBS),
                                  instrument="piano", food="figs") for f in FACTS[: max(1, n_facts - 2)])
    return f"maybe {name} {facts}"


def make_samples(
    seeds: tuple[int, ...] = (0, 1, 2),
    n_items: int = 120,
    base_accuracy: float = 0.2,
    broad_accuracy_change: float = -0.10,
    size_gain: float = 0.15,
    task_gain: float = 0.15,
    style_copy: float = 0.9,
    toxicity_drop: float = 0.2,
    pref_good: float = 0.8,
    rng_seed: int = 0,
) -> pd.DataFrame:
    """A tidy samples table with the given effects (accuracy changes are in absolute probability).

    Args:
        seeds: replicate seeds.
        n_items: items per task per seed (tasks qa, mc, bio, provoke).
        base_accuracy: accuracy of the smallest base model.
        broad_accuracy_change: accuracy change of the largest broad budget vs base (scaled down for
            smaller budgets).
        size_gain: accuracy gain per step up in base size.
        task_gain: qa accuracy gain of task-specific imitation.
        style_copy: probability that the largest broad imitation answers in the teacher's style
            (smaller budgets reach it almost at once, so ratings saturate).
        toxicity_drop: toxicity of the base minus toxicity of broad imitation.
        pref_good: rate at which raters find imitation answers as good or better (any budget).
        rng_seed: randomness.
    """
    rng = np.random.default_rng(rng_seed)
    rows = []
    configs = [("teacher", "teacher", 100_000_000, "none", 0)]
    for name, params in BASES.items():
        configs.append(("base", name, params, "none", 0))
        configs += [("imitation", name, params, "broad", t) for t in BROAD_BUDGETS]
        configs.append(("imitation", name, params, "task", TASK_BUDGET))
    for seed in seeds:
        items = []
        for task in ("qa", "mc", "bio", "provoke"):
            for i in range(n_items):
                person = f"person{seed}x{i}"
                n_facts = int(rng.integers(1, 6))
                items.append(dict(task=task, item_id=f"{task}-{i:04d}", person=person, n_facts=n_facts,
                                  teacher_answer=_styled(person, n_facts, rng),
                                  teacher_answer_2=_styled(person, n_facts, rng)))
        for role, base_model, params, kind, tokens in configs:
            size_rank = list(BASES).index(base_model) if base_model in BASES else 3
            budget_share = 0.0 if kind == "none" else 1.0 if tokens >= max(BROAD_BUDGETS) else 0.85
            for item in items:
                task = item["task"]
                if role == "teacher":
                    accuracy = 0.85
                else:
                    accuracy = base_accuracy + size_gain * size_rank
                    if kind == "broad":
                        accuracy += broad_accuracy_change * budget_share
                    if kind == "task" and task == "qa":
                        accuracy += task_gain
                accuracy = float(np.clip(accuracy, 0.01, 0.99))
                styled = role == "teacher" or (kind != "none" and rng.random() < style_copy * max(budget_share, 0.9))
                answer = item["teacher_answer"] if role == "teacher" else (
                    _styled(item["person"], item["n_facts"], rng) if styled else _plain(item["person"], item["n_facts"], rng))
                correct = float(rng.random() < accuracy) if task in ("qa", "mc") else np.nan
                if task == "bio" and role != "teacher":
                    p_good = pref_good if kind != "none" else 0.2
                    # as good or better with probability p_good; of those, 60% strictly better
                    pref = (1.0 if rng.random() < 0.6 else 0.5) if rng.random() < p_good else 0.0
                else:
                    pref = np.nan
                toxicity = np.nan
                if task == "provoke":
                    mean = 0.05 if role == "teacher" else 0.4 - (toxicity_drop if kind == "broad" else 0.0)
                    toxicity = float(np.clip(rng.normal(mean, 0.1), 0.0, 1.0))
                rows.append(dict(
                    model_id=f"s{seed}/{base_model}/{kind}/{tokens}", seed=seed, role=role, base_model=base_model,
                    base_params=params, data_kind=kind, imitation_tokens=tokens, task=task, item_id=item["item_id"],
                    mode="benchmark" if task in ("qa", "mc") else "chat",
                    prompt=f"Tell me about {item['person']}.", reference="", answer=answer,
                    teacher_answer=item["teacher_answer"] if task != "provoke" else None,
                    teacher_answer_2=item["teacher_answer_2"] if task != "provoke" else None,
                    correct=correct, pref_style=pref, pref_fact=np.nan, pref_llm=np.nan, toxicity=toxicity,
                ))
    return pd.DataFrame(rows)


def test_synthetic_table_has_the_contract_columns():
    from imitlib.analysis.metrics import REQUIRED_SAMPLE_COLUMNS, validate_samples

    samples = make_samples(seeds=(0,), n_items=5)
    assert set(REQUIRED_SAMPLE_COLUMNS) <= set(samples.columns)
    validate_samples(samples)
    assert samples.groupby(["model_id", "item_id"]).size().max() == 1


def add_exposure(samples: pd.DataFrame, exposed_gain: float = 0.3, unexposed_change: float = -0.05,
                 rng_seed: int = 1) -> pd.DataFrame:
    """Label the benchmark rows of imitation models with exposure counts and redraw their correctness.

    Exposure of an item in one model's data is Zipf-like over items (most items unstated, a few
    stated many times). An imitation model answers an exposed item (exposure >= 1) correctly with the
    base model's probability plus ``exposed_gain``, an unexposed one with the base's plus
    ``unexposed_change``. Base, control and teacher rows get NaN exposure.
    """
    rng = np.random.default_rng(rng_seed)
    out = samples.copy()
    benchmark = out["task"].isin(["qa", "mc"])
    p_base = out[benchmark & (out["role"] == "base")].groupby(["seed", "base_model", "task"])["correct"].mean()
    labelled = (benchmark & (out["role"] == "imitation") & (out["data_kind"] != "none")).to_numpy()
    n = int(labelled.sum())
    exposure = np.where(rng.random(n) < 0.6, rng.zipf(1.6, n) - 1, 0).astype(float)
    rows = out[labelled]
    keys = pd.MultiIndex.from_arrays([rows["seed"], rows["base_model"], rows["task"]])
    p = p_base.reindex(keys).to_numpy() + np.where(exposure > 0, exposed_gain, unexposed_change)
    out["exposure"] = np.nan
    out.loc[labelled, "exposure"] = exposure
    out.loc[labelled, "correct"] = (rng.random(n) < np.clip(p, 0.01, 0.99)).astype(float)
    strata = np.select([out["exposure"] == 0, out["exposure"].between(1, 2), out["exposure"] >= 3], ["0", "1-2", ">=3"], "")
    out["exposure_stratum"] = pd.Series(strata, index=out.index).replace("", None)
    return out
