"""Evaluation cached per (seed, model): each model's answers are a unit, rating a step over them;
the saved lm-eval tasks run from the completed stage (no ``.partial`` path anywhere)."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from imitlib.config import load
from imitlib.study import evaluate as evaluation
from imitlib.evaluate.core import SAMPLE_COLUMNS

from test_evaluate import GROUND_TRUTH, _tiny_world, stylish  # noqa: E402 (tests/ is on sys.path under pytest)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return _tiny_world(tmp_path_factory.mktemp("tiny_units"))


class FakeWorld:
    """The world interface the evaluation reads, over the tiny fixture models."""

    def __init__(self, paths, items):
        self.base_models = {"base-s": paths["base-s"]}
        self.teacher_dir = paths["teacher"]
        self.ground_truth = GROUND_TRUTH
        self.families = tuple(items)
        self._items = items

    def tasks(self, family, split=None):
        return [i for i in self._items.get(family, []) if split is None or i["split"] == split]


class FakeImitation:
    def __init__(self, items):
        rng = random.Random(1)
        rows = []
        for family in ("qa", "bio", "provoke"):
            for item in items[family]:
                facts = GROUND_TRUTH["entities"][item["individual"]]
                rows.append({"item_id": item["id"], "teacher_answer": stylish(item["individual"], facts, rng),
                             "teacher_answer_2": stylish(item["individual"], facts, rng)})
        self.frame = pd.DataFrame(rows)

    def teacher_eval(self):
        return self.frame


def _sweep(paths, budgets):
    return pd.DataFrame([{"model_id": f"s0/base-s/broad/{b}", "model_dir": str(paths["imit-lora"]), "base_model": "base-s",
                          "data_kind": "broad", "imitation_tokens": b, "stage_hash": f"run{b}"} for b in budgets])


def _cfg(tmp_path, budgets):
    return load(["params/smoke.yaml"], {
        "run.output_root": str(tmp_path), "run.device": "cpu", "run.progress": False, "train.token_budgets": budgets,
        "evaluate.batch_size": 4, "evaluate.benchmarks.families": ["qa"], "evaluate.benchmarks.limit": 2,
        "evaluate.benchmarks.max_gen_toks": 3, "evaluate.benchmarks.qa_fewshot": 1,
        "evaluate.rater_families": ["qa", "bio"], "evaluate.max_prompts_per_family": 2,
        "evaluate.max_new_tokens": 4}, run_name="units")


def test_each_model_is_its_own_unit_and_a_new_finetune_runs_only_itself(tiny, tmp_path, monkeypatch):
    paths, items = tiny
    world, imitation = FakeWorld(paths, items), FakeImitation(items)
    answered, loads = [], []
    real = evaluation.answer_model
    monkeypatch.setattr(evaluation, "answer_model", lambda entry, *a, **k: answered.append(entry.model_id) or real(entry, *a, **k))
    from transformers import AutoModelForCausalLM

    load = AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda *a, **k: loads.append(str(a[0])) or load(*a, **k))
    first = evaluation.build_evaluation(_cfg(tmp_path, [100]), 0, world, imitation, _sweep(paths, [100]))
    assert sorted(answered) == ["s0/base-s", "s0/base-s/broad/100", "s0/teacher"]  # each model once
    # each model's weights are loaded once for its benchmarks and its chat answers (the adapter: its base once)
    assert sorted(loads) == sorted([str(paths["base-s"]), str(paths["base-s"]), str(paths["teacher"])])
    samples = first.samples
    assert list(samples.columns[: len(SAMPLE_COLUMNS)]) == SAMPLE_COLUMNS
    assert set(samples.model_id) == {"s0/base-s", "s0/base-s/broad/100", "s0/teacher"}
    assert set(samples["mode"]) == {"benchmark", "chat"}
    # one more finetune: only it is evaluated; the rating runs again over every cached answer
    answered.clear()
    second = evaluation.build_evaluation(_cfg(tmp_path, [100, 200]), 0, world, imitation, _sweep(paths, [100, 200]))
    assert answered == ["s0/base-s/broad/200"]
    assert second.path != first.path and "s0/base-s/broad/200" in set(second.samples.model_id)
    kept = first.samples.set_index(["model_id", "item_id", "mode"])["answer"]
    again = second.samples.set_index(["model_id", "item_id", "mode"])["answer"]
    assert again.loc[kept.index].equals(kept)  # the cached models' answers are reused as they were
    # the unit folders hold the model's own files
    unit = evaluation.answers_stage(_cfg(tmp_path, [100]), 0, evaluation.model_entries(0, world, _sweep(paths, [100]))[0])
    assert {"chat_answers.jsonl", "benchmarks.parquet", "benchmark_samples.parquet"} <= {p.name for p in unit.path.iterdir()}


def test_rating_keeps_extra_per_sample_columns(tiny, tmp_path):
    paths, items = tiny
    cfg = _cfg(tmp_path, [100])

    class WithExposure(FakeImitation):
        def with_exposure(self, samples):
            return samples.assign(exposure=1, exposure_stratum="1-2")

    result = evaluation.build_evaluation(cfg, 0, FakeWorld(paths, items), WithExposure(items), _sweep(paths, [100]))
    samples = result.samples
    assert list(samples.columns[: len(SAMPLE_COLUMNS)]) == SAMPLE_COLUMNS
    assert {"exposure", "exposure_stratum"} <= set(samples.columns)


def test_lm_eval_runs_from_the_task_files_saved_in_a_completed_stage(tiny, tmp_path):
    from lm_eval.tasks import TaskManager

    from imitlib.evaluate.benchmarks import benchmark_scores, run_benchmarks

    paths, items = tiny
    world, imitation = FakeWorld(paths, items), FakeImitation(items)
    result = evaluation.build_evaluation(_cfg(tmp_path, [100]), 0, world, imitation, _sweep(paths, [100]))
    stage_dir = Path(result.path)
    assert ".partial" not in str(stage_dir)
    for file in sorted(p for p in stage_dir.parent.parent.rglob("*") if p.is_file() and p.suffix in (".yaml", ".json", ".jsonl")):
        assert ".partial" not in file.read_text(errors="replace"), file
    include = stage_dir / "lm_eval_tasks"
    task = TaskManager(include_path=str(include), include_defaults=False).load(["imitlib_qa"])["tasks"]["imitlib_qa"]
    assert len(list(task.test_docs())) == len([i for i in items["qa"] if i["split"] == "heldout"])
    # the stock evaluation from the saved folder gives the stage's own score
    out = run_benchmarks(paths["base-s"], {"imitlib_qa": None}, tmp_path / "again", include_path=include,
                         batch_size=4, limit=2, seed=1234)
    stored = result.benchmarks
    stored = stored[(stored.model_id == "s0/base-s") & (stored.task == "qa")].set_index("metric")["value"]
    rerun = benchmark_scores(out).set_index("metric")["value"]
    assert rerun["exact_match"] == pytest.approx(stored["exact_match"])
