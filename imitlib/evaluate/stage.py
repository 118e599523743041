"""The ``04_evaluate/seed{seed}`` stage: every base model, every imitation model of the sweep, the teacher.

Sources: the world (task items, ground truth, base models, teacher folder), the imitation-data
stage (the teacher's two answers to every held-out prompt; imitation-split conversations that fit
the style rater) and the training sweep (the imitation models). They sit above evaluation in the
import order, so they are imported inside :func:`build_evaluation` only.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from imitlib.config import Config
from imitlib.evaluate.core import ModelEntry, evaluate_models
from imitlib.evaluate.human import human_preference, import_human_ratings
from imitlib.evaluate.style import StylePreferenceModel
from imitlib.stages import Stage, atomic_write_json

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
    def style_model(self) -> StylePreferenceModel:
        """The fitted crowdworker stand-in."""
        return StylePreferenceModel.from_dict(json.loads((self.path / "style_rater.json").read_text()))

    @property
    def judge(self) -> dict[str, Any]:
        """Judge model, prompt and sampling as used."""
        return json.loads((self.path / "judge.json").read_text())

    @property
    def models(self) -> pd.DataFrame:
        return pd.read_json(self.path / "models.json")

    def preference_summary(self) -> pd.DataFrame:
        """Mean rater score vs the teacher per model (1 better, 0.5 tie, 0 worse)."""
        chat = self.samples[self.samples["mode"] == "chat"]
        keys = ["model_id", "role", "base_model", "data_kind", "imitation_tokens"]
        return chat.groupby(keys, dropna=False)[["pref_style", "pref_fact", "pref_llm", "toxicity"]].mean().reset_index()

    def with_human_ratings(self, paths: list[str | Path]) -> pd.DataFrame:
        """The samples table with ``pref_human`` merged from rating files."""
        prefs = human_preference(import_human_ratings(paths))
        return self.samples.merge(prefs, on=["model_id", "item_id"], how="left")


def _count_parameters(path: str | Path) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(path))
    import torch

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def _sweep_entries(seed: int, sweep: pd.DataFrame) -> list[ModelEntry]:
    """Imitation models of the sweep (``imitlib.train.sweep.run_sweep`` rows), replay-only controls included."""
    return [ModelEntry(model_id=str(r.model_id), path=str(r.model_dir), role="imitation", base_model=str(r.base_model),
                       base_params=0, data_kind=str(r.data_kind), imitation_tokens=int(r.imitation_tokens), seed=seed)
            for r in sweep.itertuples()]


def _upstream(cfg: Config, seed: int):
    """The world, imitation data and trained sweep of a seed (never builds any of them)."""
    from imitlib.data.stage import load_imitation_data
    from imitlib.train.sweep import run_sweep
    from imitlib.world import load_world

    world = load_world(cfg, seed)
    imitation = load_imitation_data(cfg, seed, world)
    sweep = run_sweep(cfg, seed, world=world, data=imitation, progress=False, build=False)
    world_hash = getattr(getattr(world, "stage", None), "hash", None) or getattr(world, "stage_hash", None)
    if world_hash is None:
        raise AttributeError(f"{type(world).__name__} has no stage (or stage_hash) to key the evaluation on")
    upstream = [str(world_hash), imitation.path.name, *map(str, sweep.stage_hash)]
    stage = Stage(cfg, f"{STAGE_PREFIX}/seed{seed}", reads=["evaluate", "run.device"], upstream=upstream, seeds=[seed])
    return world, imitation, sweep, stage


def evaluation_stage(cfg: Config, seed: int) -> Stage:
    """The ``04_evaluate/seed{seed}`` stage of this config (exact cache key); builds nothing."""
    return _upstream(cfg, seed)[3]


def build_evaluation(cfg: Config, seed: int) -> Evaluation:
    """Build (or reuse) ``04_evaluate/seed{seed}`` and return it."""
    from imitlib.models import pick_device

    world, imitation, sweep, stage = _upstream(cfg, seed)
    if stage.done:
        return Evaluation(stage.path)
    teacher_eval = imitation.teacher_eval()
    teacher_answers = {str(r.item_id): (str(r.teacher_answer), str(r.teacher_answer_2)) for r in teacher_eval.itertuples()}

    items = {}
    for family in tuple(getattr(world, "families", WORLD_FAMILIES)):  # real tracks: qa, mc, code, open
        rows = [*world.tasks(family, "heldout"), *world.tasks(family, "imitation")]
        if rows:
            items[family] = rows

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

    # Style-rater fit: the teacher's answers to imitation-split prompts of the rated families.
    settings = cfg.evaluate
    fit_pairs = []
    for row in imitation.conversations:
        if row["family"] in settings.rater_families and len(row["messages"]) >= 2:
            user, assistant = row["messages"][0], row["messages"][1]
            if user["role"] == "user" and assistant["role"] == "assistant":
                fit_pairs.append((user["content"], assistant["content"]))
    fit_pairs = sorted(set(fit_pairs))
    random.Random(seed).shuffle(fit_pairs)
    fit_pairs = fit_pairs[: settings.style_rater.fit_prompts]
    if len(fit_pairs) < 2:
        raise ValueError(f"only {len(fit_pairs)} imitation conversations of families {settings.rater_families} to fit the style rater")
    style_fit = ([p for p, _ in fit_pairs], [a for _, a in fit_pairs])

    device = str(pick_device(cfg.run.device))
    with stage.build() as work:
        atomic_write_json(work / "models.json", [m.__dict__ for m in models])
        samples, _ = evaluate_models(models, items, world.ground_truth, teacher_answers, style_fit, settings, work,
                                     teacher_dir=world.teacher_dir, device=device, seed=seed,
                                     progress=cfg.run.progress)
        if settings.human_ratings:
            from imitlib.config import PROJECT_ROOT

            paths = [p if Path(p).is_absolute() else PROJECT_ROOT / p for p in settings.human_ratings]
            merged = samples.merge(human_preference(import_human_ratings(paths)), on=["model_id", "item_id"], how="left")
            from imitlib.evaluate.core import _write_parquet

            _write_parquet(merged, work / "samples.parquet")
    return Evaluation(stage.path)


def build_evaluations(cfg: Config) -> list[Evaluation]:
    """:func:`build_evaluation` for every seed of ``run.seeds`` (in ``run.seed_workers`` processes; complete ones only load)."""
    from imitlib.parallel import for_seeds, stage_done

    return for_seeds(build_evaluation, cfg, desc="04_evaluate seeds", done=stage_done(evaluation_stage))
