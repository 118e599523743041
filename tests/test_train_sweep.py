"""The sweep on tiny fixtures: cached stages per run, replay control, loss curves and their figure."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import imitlib.config
from imitlib.study.train import loss_curve_figure, loss_curves, run_sweep
from imitlib.study.train import sweep_points
from test_train import PEOPLE, conversations, make_model, make_tokenizer

torch.set_num_threads(1)


@dataclass
class FixtureStage:
    hash: str


class FixtureWorld:
    """The parts of a world the sweep reads: base model folders and pretraining documents."""

    def __init__(self, root: Path):
        tokenizer = make_tokenizer()
        self.base_models = {}
        for name, hidden in (("base-s", 16), ("base-m", 32)):
            folder = root / name
            make_model(len(tokenizer), hidden=hidden, layers=1).save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            self.base_models[name] = folder
        self.stage = FixtureStage("world00001")

    def replay_documents(self, count: int, seed: int) -> list[str]:
        rng = random.Random(seed)
        return [" ".join(f"{n} was born in {c} in {y} ." for n, c, y in rng.sample(PEOPLE, 3)) for _ in range(count)]


class FixtureData:
    """The parts of the imitation data the sweep reads: nested budgets of two kinds."""

    path = Path("imitation-fixture")

    def __init__(self):
        from datasets import Dataset

        rows = []
        for i, messages in enumerate(conversations()):
            kind = "broad" if i % 2 else "task"
            rows.append({"kind": kind, "messages": messages, "budgets": [200] if i < 8 else [400]})
        self.dataset = Dataset.from_list(rows)

    def filled_budgets(self, kind: str) -> list[int]:
        return [200, 400]

    def subset(self, kind: str, budget: int):
        return self.dataset.filter(lambda r: r["kind"] == kind and (r["budgets"][0] <= budget))


def test_sweep_runs_caches_and_plots(tmp_path, monkeypatch):
    cfg = imitlib.config.load(["params/smoke.yaml"], {
        "run.output_root": str(tmp_path / "out"), "train.base_models": ["base-s"], "train.data_kinds": ["broad"],
        "train.replay_tokens": 300, "train.steps": 6, "train.seq_len": 64, "train.batch_size": 4,
        "train.checkpoint_every": 2, "train.lr": 3e-3})
    world, data = FixtureWorld(tmp_path / "world"), FixtureData()
    sweep = run_sweep(cfg, 0, world=world, data=data, progress=False)
    assert list(sweep["data_kind"]) == ["none", "broad", "broad"]
    assert list(sweep["imitation_tokens"]) == [0, 200, 400]
    imitation = sweep[sweep["data_kind"] != "none"]
    assert (imitation["steps"] == 6).all()  # train.steps: every budget the same optimiser steps
    # every run, the replay-only control included, sees the same replay budget
    assert sweep["replay_tokens_seen"].nunique() == 1
    assert (sweep["n_mask_mismatch"] == 0).all() and (sweep["n_dropped"] == 0).all()
    assert list(sweep["n_conversations"]) == [0, 4, 8]
    assert sweep.loc[1, "epochs_run"] == pytest.approx(2 * sweep.loc[2, "epochs_run"])  # same steps, half the data
    # repetition: the same steps over half the unique data repeat it twice as often
    assert sweep.loc[2, "unique_supervised_tokens"] == pytest.approx(2 * sweep.loc[1, "unique_supervised_tokens"], rel=0.2)
    assert sweep.loc[1, "repetition"] == pytest.approx(2 * sweep.loc[2, "repetition"], rel=0.2)
    assert (imitation["repetition"] > 1).all()
    assert (sweep["replay_tokens_seen"] > 0).all()
    for row in sweep.itertuples():
        folder = Path(row.model_dir)
        assert (folder / "model.safetensors").exists() and (folder / "tokenizer_config.json").exists()
        assert not (folder.parent / "checkpoints").exists() and (folder.parent / "manifest.json").exists()
    from imitlib.models import load_model

    model, tokenizer = load_model(sweep.loc[2, "model_dir"])
    assert tokenizer.chat_template is not None
    # a rerun reuses every stage (no training: building would fail without the data object)
    class Empty:
        path = data.path

        def filled_budgets(self, kind):
            return [200, 400]

        def subset(self, kind, budget):
            raise AssertionError("a cached run was retrained")

    again = run_sweep(cfg, 0, world=world, data=Empty(), progress=False)
    assert list(again["stage_hash"]) == list(sweep["stage_hash"])
    curves = loss_curves(sweep)
    assert set(curves["data"]) == {"train", "replay"} and len(curves) > 6
    figure = loss_curve_figure(curves)
    assert figure.axes


# ---- the budget plan ---------------------------------------------------------------------------
class PlanData:
    """Filled budgets only (what the plan reads)."""

    path = Path("plan-fixture")

    def __init__(self, filled: dict[str, list[int]]):
        self.filled = filled

    def filled_budgets(self, kind: str) -> list[int]:
        return self.filled[kind]


def test_every_budget_has_the_same_number_of_optimiser_steps():
    """With train.steps, the loop's step plan has that many steps for a tiny and a large subset alike."""
    from imitlib.train.loop import make_plan, prepare_examples
    from imitlib.study.train import train_args_from

    cfg = imitlib.config.load(["params/default.yaml"], {"run.output_root": "outputs"})
    assert cfg.train.steps is not None, "the default study must train every budget for the same steps"
    args = train_args_from(cfg, seed=0)
    rows_per_step = args.batch_size * args.grad_accum
    plans = {}
    for conversations in (1, 7, 40 * rows_per_step * cfg.train.steps):  # a few rows .. many passes' worth
        examples = [{"input_ids": list(range(3, 3 + 20)), "labels": [-100] * 10 + list(range(13, 23))}
                    for _ in range(conversations)]
        plan = make_plan(prepare_examples(examples, args.seq_len), None, args, world_size=1)
        plans[conversations] = plan
    assert {len(plan.main) for plan in plans.values()} == {cfg.train.steps}
    assert plans[1].epochs_run > 1 > plans[40 * rows_per_step * cfg.train.steps].epochs_run


def test_kinds_are_compared_at_equal_budgets():
    cfg = imitlib.config.load(["params/smoke.yaml"], {
        "run.output_root": "outputs", "train.curve_base_models": ["base-m"], "train.curve_data_kinds": ["broad"],
        "train.replay_tokens": 0})
    data = PlanData({"broad": [300, 1000, 3000], "task": [300, 1000]})
    points = sweep_points(cfg, ["base-s", "base-m"], data)
    runs = {(p["base_model"], p["data_kind"]): [] for p in points}
    for p in points:
        runs[(p["base_model"], p["data_kind"])].append(p["imitation_tokens"])
    # broad also at its own largest budget (base sizes compared at the most data); task at the largest both fill
    assert runs == {("base-s", "broad"): [1000, 3000], ("base-s", "task"): [1000],
                    ("base-m", "broad"): [300, 1000, 3000], ("base-m", "task"): [1000]}
    assert len(sweep_points(cfg, ["base-s", "base-m"], PlanData({"broad": [300, 1000], "task": [300, 1000]}))) == 5
    both = PlanData({"broad": [300, 1000, 3000], "task": [300, 1000, 3000]})
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"curve_data_kinds": []})})
    curve = [p["imitation_tokens"] for p in sweep_points(cfg, ["base-s", "base-m"], both)
             if p["base_model"] == "base-m" and p["data_kind"] == "task"]
    assert curve == [300, 1000, 3000]
