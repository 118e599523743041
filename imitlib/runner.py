"""Run the study's DAG (:mod:`imitlib.dag`): build each stage for every seed, handing it its upstream results.

This is the one module that imports every stage module; the stage modules import none of each other.
Each notebook calls one function here:

=====================  ==========================================  ========================================
notebook               call                                        returns
=====================  ==========================================  ========================================
``01_world``           ``worlds(cfg)``                             the completed world stages, seed order
``02_imitation_data``  ``imitation_data(cfg)``                     ``{seed: ImitationData}``
``03_train``           ``sweeps(cfg)``                             the runs of every seed (one table)
``04_evaluate``        ``evaluations(cfg)``                        ``[Evaluation]``, seed order
``05_analysis``        ``analysis(cfg)``                           ``AnalysisResult``
=====================  ==========================================  ========================================

Seeds are built in ``run.seed_workers`` processes (:func:`imitlib.parallel.for_seeds`); a stage whose
folder for this config is complete is only loaded, and upstream results are loaded from their
completed stages (a missing one is an error that names the notebook to run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from imitlib import dag
from imitlib.study.analysis import AnalysisResult, run_analysis
from imitlib.config import Config
from imitlib.study.imitation_data import ImitationData, build_imitation_data, load_imitation_data
from imitlib.study.evaluate import Evaluation, build_evaluation, load_evaluation
from imitlib.parallel import for_seeds
from imitlib.stages import Stage, atomic_path
from imitlib.study.train import load_sweep, run_sweep
from imitlib.study.world import build_world, load_world


def _done(name: str):
    return lambda cfg, seed: dag.stage(cfg, name, seed).done


def _build_world(cfg: Config, seed: int) -> Stage:
    return build_world(cfg, seed)


def _build_data(cfg: Config, seed: int) -> ImitationData:
    return build_imitation_data(cfg, seed, load_world(cfg, seed))


def _build_sweep(cfg: Config, seed: int) -> pd.DataFrame:
    if dag.stage(cfg, "03_train", seed).done:
        return load_sweep(cfg, seed)
    return run_sweep(cfg, seed, load_world(cfg, seed), load_imitation_data(cfg, seed))


def _build_evaluation(cfg: Config, seed: int) -> Evaluation:
    stage = dag.stage(cfg, "04_evaluate", seed)
    if stage.done:
        return Evaluation(stage.path)
    return build_evaluation(cfg, seed, load_world(cfg, seed), load_imitation_data(cfg, seed), load_sweep(cfg, seed))


def worlds(cfg: Config) -> list[Stage]:
    """``01_world`` for every seed."""
    return for_seeds(_build_world, cfg, desc="01_world seeds", done=_done("01_world"))


def imitation_data(cfg: Config) -> dict[int, ImitationData]:
    """``02_imitation_data`` for every seed (each seed's world handed in)."""
    return dict(zip(cfg.run.seeds, for_seeds(_build_data, cfg, desc="02_imitation_data seeds",
                                             done=_done("02_imitation_data"))))


def sweeps(cfg: Config) -> pd.DataFrame:
    """``03_train`` for every seed (world and imitation data handed in); the table of every run, also
    saved as ``<tables_dir>/03_train_runs.csv`` with ``model_dir`` relative to the run folder (so the
    committed table does not carry the path of the machine that built it)."""
    table = pd.concat(for_seeds(_build_sweep, cfg, desc="03_train seeds", done=_done("03_train")), ignore_index=True)
    run_dir = cfg.run_dir.resolve()

    def relative(path: str) -> str:
        p = Path(path).resolve()
        return p.relative_to(run_dir).as_posix() if p.is_relative_to(run_dir) else str(path)

    with atomic_path(cfg.tables_dir / "03_train_runs.csv") as tmp:
        table.assign(model_dir=[relative(p) for p in table["model_dir"]]).to_csv(tmp, index=False)
    return table


def evaluations(cfg: Config) -> list[Evaluation]:
    """``04_evaluate`` for every seed (world, imitation data and sweep handed in)."""
    return for_seeds(_build_evaluation, cfg, desc="04_evaluate seeds", done=_done("04_evaluate"))


def analysis(cfg: Config) -> AnalysisResult:
    """``05_analysis`` over every seed's evaluation (the evaluations must be complete)."""
    folders = [load_evaluation(cfg, seed).path for seed in cfg.run.seeds]
    return run_analysis(cfg, folders)




BUILDERS = {"01_world": worlds, "02_imitation_data": imitation_data, "03_train": sweeps,
            "04_evaluate": evaluations, "05_analysis": analysis}


def build(cfg: Config, name: str) -> Any:
    """Build stage ``name`` of the DAG for every seed (what its notebook shows)."""
    dag.spec(name)
    return BUILDERS[name](cfg)


def build_all(cfg: Config) -> dict[str, Any]:
    """Every stage, in DAG order."""
    return {name: build(cfg, name) for name in dag.order()}
