"""Read the evaluation stage's saved results, compute every table and the scorecard, write them.

The analysis reads only ``samples.parquet`` and ``benchmarks.parquet`` of ``04_evaluate/seed<N>``
(one per seed); it never trains or evaluates, so restyling a table or figure is cheap. The metric
store (every bootstrap interval, the slow part) is cached as the stage ``05_analysis``, keyed by the
``analysis`` params and the evaluation folders it read; tables and the scorecard are recomputed from
it every time. Outputs (written atomically): ``<run>/tables/*.csv`` and ``*.md``, ``<run>/scorecard.md``.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from imitlib.analysis import claims, tables
from imitlib.analysis.metrics import MetricStore, compute_metrics, validate_samples
from imitlib import dag
from imitlib.config import Config
from imitlib.stages import COMPLETE_MARKER, Stage, atomic_path, atomic_write_text

STORE_FILE = "metric_store.pkl"


class ResultsNotFound(FileNotFoundError):
    """The evaluation stage has not written results for this run."""


def evaluation_folder(cfg: Config, seed: int) -> Path:
    """The completed ``04_evaluate/seed<N>`` stage folder of this config (its exact key, from :mod:`imitlib.dag`).

    Raises:
        ResultsNotFound: when that stage is not complete (no other folder stands in for it).
    """
    stage = dag.stage(cfg, "04_evaluate", seed)
    if not (stage.path / COMPLETE_MARKER).exists():
        raise ResultsNotFound(f"the evaluation of seed {seed} for this config is not complete ({stage.path}); "
                              "run 04_evaluate first")
    return stage.path


def read_samples(paths: list[Path]) -> pd.DataFrame:
    """Concatenate and validate tidy per-sample tables (errors name the file)."""
    frames = []
    for path in paths:
        if not Path(path).exists():
            raise ResultsNotFound(f"{path}: samples table not found")
        frames.append(validate_samples(pd.read_parquet(path), source=str(path)))
    if not frames:
        raise ResultsNotFound("no samples tables given")
    return pd.concat(frames, ignore_index=True)


def load_results(cfg: Config, folders: list[Path] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All seeds' ``samples.parquet`` and ``benchmarks.parquet`` of this run, concatenated."""
    folders = folders if folders is not None else [evaluation_folder(cfg, seed) for seed in cfg.run.seeds]
    samples = read_samples([folder / "samples.parquet" for folder in folders])
    benchmark_frames = []
    for seed, folder in zip(cfg.run.seeds, folders):
        path = folder / "benchmarks.parquet"
        if path.exists():
            frame = pd.read_parquet(path)
            if "seed" not in frame.columns:
                frame.insert(0, "seed", seed)
            benchmark_frames.append(frame)
    benchmarks = pd.concat(benchmark_frames, ignore_index=True) if benchmark_frames else pd.DataFrame()
    return samples, benchmarks


@dataclass
class AnalysisResult:
    """Everything the notebook shows: the metric store, the tables and the scorecard."""

    store: MetricStore
    table1: pd.DataFrame
    table2: pd.DataFrame
    benchmarks: pd.DataFrame
    preference: pd.DataFrame
    style_factuality: pd.DataFrame
    scorecard: pd.DataFrame
    scorecard_markdown: str
    files: dict[str, Path]


def analyse(samples: pd.DataFrame | None, cfg: Config, progress: bool = False,
            store: MetricStore | None = None) -> AnalysisResult:
    """Compute every table and the scorecard from a validated samples table, or from an already
    computed metric store (writes nothing)."""
    settings = cfg.analysis
    if store is None:
        if samples is None:
            raise ValueError("analyse needs a samples table or a metric store")
        store = compute_metrics(samples, settings.bootstrap_samples, settings.confidence, settings.bootstrap_seed,
                                style_tasks=settings.style_tasks, progress=progress)
    card = claims.scorecard(store, settings.claims, settings.preference_column, settings.factual_task,
                            primary=settings.primary_claims, confidence=settings.confidence,
                            seed_interval=settings.seed_interval, crowd_weight=claims.crowd_weight(cfg))
    return AnalysisResult(
        store=store,
        table1=tables.table1(store, settings.factual_task),
        table2=tables.table2(store),
        benchmarks=tables.benchmark_table(store),
        preference=tables.preference_table(store, settings.preference_column),
        style_factuality=tables.style_factuality_table(store, settings.factual_task),
        scorecard=card,
        scorecard_markdown=claims.scorecard_markdown(card, cfg.run_name, settings.confidence, settings.bootstrap_samples),
        files={},
    )


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def write_outputs(result: AnalysisResult, cfg: Config, benchmarks_by_seed: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write the tables (CSV and markdown) and the scorecard under the run folder."""
    out = cfg.tables_dir
    files = {
        "table1": _write_csv(result.table1, out / "table1_factual_accuracy.csv"),
        "table1_md": atomic_write_text(out / "table1_factual_accuracy.md", tables.table1_markdown(result.table1)),
        "table2": _write_csv(result.table2, out / "table2_style.csv"),
        "table2_md": atomic_write_text(out / "table2_style.md", tables.table2_markdown(result.table2)),
        "benchmarks": _write_csv(result.benchmarks, out / "benchmarks.csv"),
        "benchmarks_md": atomic_write_text(out / "benchmarks.md", tables.to_markdown(
            result.benchmarks, ["base_model", "role", "data_kind", "imitation_tokens"], "metric")),
        "preference": _write_csv(result.preference, out / "preference.csv"),
        "preference_md": atomic_write_text(out / "preference.md", tables.to_markdown(
            result.preference, ["base_model", "role", "data_kind", "imitation_tokens"], "measure")),
        "style_factuality": _write_csv(result.style_factuality, out / "style_factuality.csv"),
        "metrics": _write_csv(result.store.frame(), out / "all_metrics.csv"),
        "metrics_by_seed": _write_csv(result.store.seed_frame(), out / "metrics_by_seed.csv"),
        "scorecard_csv": _write_csv(result.scorecard, out / "scorecard.csv"),
        "claims_by_seed": _write_csv(claims.claims_by_seed(result.scorecard), out / "claims_by_seed.csv"),
        "scorecard": atomic_write_text(cfg.run_dir / "scorecard.md", result.scorecard_markdown),
    }
    if benchmarks_by_seed is not None and not benchmarks_by_seed.empty:
        files["benchmarks_by_seed"] = _write_csv(benchmarks_by_seed, out / "benchmarks_by_seed.csv")
    result.files = files
    return files


def analysis_stage(cfg: Config, folders: list[Path]) -> Stage:
    """The cached metric store of this run, keyed by :mod:`imitlib.dag`: the ``analysis`` params, the
    analysis code and the evaluation folders read (one per seed; a folder is named by its key)."""
    return dag.stage(cfg, "05_analysis", given={"04_evaluate": [Path(folder).name for folder in folders]})


def run_analysis(cfg: Config, folders: list[Path] | None = None) -> AnalysisResult:
    """Load this run's evaluation results, analyse them and write every table and the scorecard.

    Args:
        cfg: the resolved config.
        folders: the completed evaluation folders, one per seed of ``run.seeds`` (handed in by
            :mod:`imitlib.runner`); default: this config's, found by their keys.

    The metric store comes from the ``05_analysis`` stage when it is complete (a rerun with
    unchanged params and results skips the bootstrap); ``run.force`` recomputes it.
    """
    folders = folders if folders is not None else [evaluation_folder(cfg, seed) for seed in cfg.run.seeds]
    samples, benchmarks = load_results(cfg, folders)
    stage = analysis_stage(cfg, folders)
    store = None
    if stage.done:
        try:
            with open(stage.file(STORE_FILE), "rb") as handle:
                store = pickle.load(handle)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
            store = None  # unreadable (e.g. written by an incompatible version): recompute
    if store is None:
        clock = time.perf_counter()
        result = analyse(samples, cfg, progress=cfg.run.progress)
        timings = {"analysis": round(time.perf_counter() - clock, 3)}  # before the build: the store is its result
        with stage.build(info={"timings": timings}) as folder:
            with open(folder / STORE_FILE, "wb") as handle:
                pickle.dump(result.store, handle, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        result = analyse(None, cfg, store=store)
    write_outputs(result, cfg, benchmarks)
    return result
