"""The ``04_evaluate/seed{seed}`` stage: every base model, every imitation model of the sweep, the teacher.

Sources, handed in by :mod:`imitlib.runner` (this module imports no other stage): the world (task
items, ground truth, base models, teacher folder), the imitation data (the teacher's two answers to
every held-out prompt) and the sweep table (the imitation models and replay-only controls).

Two steps: each model's benchmarks and chat answers are a cached unit of their own
(``04_evaluate/seed<N>/models/<model>/<hash>``, :mod:`imitlib.evaluate.answers`), so adding a
finetune runs only the new model; then the seed's stage rates the cached answers against the
teacher's and writes the tidy tables (``samples.parquet``, ``benchmarks.parquet``) and
``lm_eval_tasks/`` (``lm_eval --tasks imitlib_qa --include_path <stage>/lm_eval_tasks`` runs them).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from imitlib import dag
from imitlib.config import PROJECT_ROOT, Config
from imitlib.evaluate.answers import ModelEntry, answer_model, folder_name, read_answers, write_parquet, write_tasks
from imitlib.evaluate.core import rate_answers
from imitlib.evaluate.human import import_human_ratings, merge_human
from imitlib.models import pick_device
from imitlib.stages import COMPLETE_MARKER, Stage, StageError, atomic_write_json, log

STAGE_PREFIX = "04_evaluate"
WORLD_FAMILIES = ("qa", "mc", "bio", "compare", "skill", "provoke")


@dataclass
class Evaluation:
    """A completed evaluation stage."""

    path: Path

    @property
    def samples(self) -> pd.DataFrame:
        """The tidy per-sample table (``samples.parquet``)."""
        return pd.read_parquet(self.path / "samples.parquet")

    @property
    def benchmarks(self) -> pd.DataFrame:
        """lm-eval aggregate scores per model, task and metric (``benchmarks.parquet``)."""
        return pd.read_parquet(self.path / "benchmarks.parquet")

    @property
    def raters(self) -> dict[str, Any]:
        """The rater panel as used: crowd-rater features and weights, fact weights, the compare baseline."""
        return json.loads((self.path / "raters.json").read_text())

    @property
    def judge(self) -> dict[str, Any]:
        """Judge model, prompt and sampling as used."""
        return json.loads((self.path / "judge.json").read_text())

    @property
    def models(self) -> pd.DataFrame:
        return pd.read_json(self.path / "models.json")

    def preference_summary(self) -> pd.DataFrame:
        """Mean rater score vs the teacher per model (1 better, 0.5 tie, 0 worse), every panel weight included."""
        chat = self.samples[self.samples["mode"] == "chat"]
        keys = ["model_id", "role", "base_model", "data_kind", "imitation_tokens"]
        panel = sorted(c for c in chat.columns if c.startswith("pref_w"))
        return chat.groupby(keys, dropna=False)[[*panel, "pref_style", "pref_fact", "pref_llm", "toxicity"]].mean().reset_index()

    def with_human_ratings(self, paths: list[str | Path]) -> pd.DataFrame:
        """The samples table with ``pref_human`` merged from rating files."""
        return merge_human(self.samples, import_human_ratings(paths))


def _count_parameters(path: str | Path) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(path))
    import torch

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def _sweep_entries(seed: int, sweep: pd.DataFrame) -> list[ModelEntry]:
    """Imitation models of the sweep (``imitlib.study.train.run_sweep`` rows); replay-only controls
    (data kind ``none``: replay, no imitation data) get the role ``replay_control``."""
    return [ModelEntry(model_id=str(r.model_id), path=str(r.model_dir),
                       role="replay_control" if str(r.data_kind) == "none" else "imitation", base_model=str(r.base_model),
                       base_params=0, data_kind=str(r.data_kind), imitation_tokens=int(r.imitation_tokens), seed=seed)
            for r in sweep.itertuples()]


def evaluation_stage(cfg: Config, seed: int) -> Stage:
    """The ``04_evaluate/seed{seed}`` stage of this config, keyed by :mod:`imitlib.dag`; builds and loads nothing."""
    return dag.stage(cfg, STAGE_PREFIX, seed)


def load_evaluation(cfg: Config, seed: int) -> Evaluation:
    """The completed evaluation of a seed (error if it has not been built)."""
    stage = evaluation_stage(cfg, seed)
    if not (stage.path / COMPLETE_MARKER).exists():
        raise StageError(f"the evaluation of seed {seed} is not built ({stage.path}): run notebooks/04_evaluate first")
    return Evaluation(stage.path)


def model_entries(seed: int, world: Any, sweep: pd.DataFrame) -> list[ModelEntry]:
    """Every model of a seed: the base models, the sweep's models (its rows), the teacher (when it has weights)."""
    base_models = dict(world.base_models)  # {size name: folder}
    params = {name: _count_parameters(path) for name, path in base_models.items()}
    models = [ModelEntry(f"s{seed}/{name}", str(path), "base", name, params[name], seed=seed)
              for name, path in base_models.items()]
    for entry in _sweep_entries(seed, sweep):
        entry.base_params = params.get(entry.base_model, 0)
        models.append(entry)
    if world.teacher_dir is not None:  # an API teacher (paper track) has no weights to benchmark
        models.append(ModelEntry(f"s{seed}/teacher", str(world.teacher_dir), "teacher", "teacher",
                                 _count_parameters(world.teacher_dir), seed=seed))
    return models


def answers_stage(cfg: Config, seed: int, entry: ModelEntry, run_hash: str | None = None) -> Stage:
    """The cached unit of one model's answers ``04_evaluate/seed<N>/models/<model>`` (an imitation
    model's key includes its sweep run's, ``run_hash``)."""
    return dag.unit(cfg, STAGE_PREFIX, seed, f"models/{folder_name(entry.model_id)}",
                    extra={"model": entry.columns()}, upstream=[run_hash] if run_hash else [])


def world_items(world: Any) -> dict[str, list[dict]]:
    """``{family: items of both splits}`` of every family the world has (real tracks: qa, mc, code, open)."""
    items = {}
    for family in tuple(getattr(world, "families", WORLD_FAMILIES)):
        rows = [*world.tasks(family, "heldout"), *world.tasks(family, "imitation")]
        if rows:
            items[family] = rows
    return items


def build_evaluation(cfg: Config, seed: int, world: Any, imitation: Any, sweep: pd.DataFrame) -> Evaluation:
    """Build (or reuse) ``04_evaluate/seed{seed}``: each model's answers as its own cached unit (only
    models without one are run, each loaded once), then rating over the cached answers.

    Args:
        cfg: the resolved config (reads ``evaluate`` and ``run``).
        seed: replicate seed.
        world: the seed's world (task items, ground truth, base models, teacher folder).
        imitation: the seed's imitation data (``teacher_eval()``: the teacher's two answers per held-out prompt).
        sweep: the seed's sweep table (``model_dir``, ``stage_hash`` per run).
        All three are handed in by :mod:`imitlib.runner`.
    """
    stage = evaluation_stage(cfg, seed)
    if stage.done:
        return Evaluation(stage.path)
    teacher_eval = imitation.teacher_eval()
    teacher_answers = {str(r.item_id): (str(r.teacher_answer), str(r.teacher_answer_2)) for r in teacher_eval.itertuples()}
    items = world_items(world)
    models = model_entries(seed, world, sweep)
    run_hashes = {str(r.model_id): str(r.stage_hash) for r in sweep.itertuples()}
    settings = cfg.evaluate
    device = str(pick_device(cfg.run.device))
    answered = []
    for entry in tqdm(models, desc=f"04_evaluate seed {seed} answers", disable=not cfg.run.progress):
        unit = answers_stage(cfg, seed, entry, run_hashes.get(entry.model_id))
        if not unit.done:
            log(f"04_evaluate: {unit.name} ({entry.path})")
            # the real world benchmarked its teacher and bases before imitation (calibration): reused when the same tasks
            reuse = world.calibration_dir(entry) if hasattr(world, "calibration_dir") else None
            with unit.build() as work:
                unit.info["timings"] = answer_model(entry, items, teacher_answers, settings, work, device=device,
                                                    reuse=reuse)
        answered.append(read_answers(entry, unit.path))
    with stage.build() as work:
        atomic_write_json(work / "models.json", [m.__dict__ for m in models])
        write_tasks(items, settings, work / "lm_eval_tasks")  # the tasks every unit ran, for lm_eval --include_path
        clock, judge_timings = time.perf_counter(), {}
        samples, _ = rate_answers(answered, items, world.ground_truth, teacher_answers, settings, work,
                                  teacher_dir=world.teacher_dir, seed=seed, progress=cfg.run.progress,
                                  timings=judge_timings)
        rating = time.perf_counter() - clock - sum(judge_timings.values())
        stage.info["timings"] = {**judge_timings, "rating": round(rating, 3)}  # rating: all but the judge's
        if hasattr(imitation, "with_exposure"):  # exposure, exposure_stratum of imitation models' factual rows
            samples = imitation.with_exposure(samples)
            write_parquet(samples, work / "samples.parquet")
        if settings.human_ratings:
            paths = [p if Path(p).is_absolute() else PROJECT_ROOT / p for p in settings.human_ratings]
            merged = merge_human(samples, import_human_ratings(paths))
            write_parquet(merged, work / "samples.parquet")
    return Evaluation(stage.path)
