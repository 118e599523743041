"""The imitation sweep: base size × imitation token budget × data kind, one cached stage per run.

Each run is the stage ``03_train/seed<seed>/<base>/<kind>/<budget>`` holding ``model/`` (full
weights or a LoRA adapter, saved HF-style with the tokenizer), ``losses.json`` (the loss curve) and
``result.json`` (steps, tokens seen, unique tokens and repetition, truncated / dropped / mismatched
counts, whether ``min_steps`` applied). With ``train.steps`` every imitation run takes the same number
of optimiser steps, so the budget axis measures unique data; repetition is reported per run. With ``train.replay_tokens > 0`` every run also sees the same replay budget of pretraining
text, and ``train.replay_control`` adds a zero-imitation, replay-only run per base model
(``data_kind = "none"``, ``imitation_tokens = 0``) so replay and imitation effects can be told apart.

The sweep reads a *world* (``base_models``: name → model folder; ``replay_documents(count, seed)``:
pretraining texts) and the imitation data (``subset(kind, budget)``, ``filled_budgets(kind)``),
both handed in by :mod:`imitlib.runner`; it imports no other stage. The seed's whole sweep is the
stage ``03_train/seed<seed>`` (``runs.parquet``: the table of its runs), which later stages look up
with :func:`load_sweep`.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from imitlib import dag
from imitlib.config import Config
from imitlib.stages import COMPLETE_MARKER, Stage, StageError, atomic_path, atomic_write_json, log
from imitlib.train.launch import launch, write_jsonl
from imitlib.train.loop import IGNORE_INDEX, TrainArgs, prepare_examples, train_causal_lm
from imitlib.train.tokenize import tokenize_conversations

STAGE_PREFIX = "03_train"
RUNS_FILE = "runs.parquet"


def train_args_from(cfg: Config, seed: int) -> TrainArgs:
    """TrainArgs of one sweep run from ``cfg.train``.

    With ``train.steps`` every imitation run takes exactly that many optimiser steps, whatever its
    budget: a small budget is repeated, a large one may be seen less than once (``epochs``,
    ``min_steps`` and ``max_steps`` are then unused), so the budget axis measures unique data.
    """
    t = cfg.train
    min_steps, max_steps = (t.min_steps, t.max_steps) if t.steps is None else (t.steps, t.steps)
    return TrainArgs.from_settings(t, seed=seed, min_steps=min_steps, max_steps=max_steps)


def replay_examples(world: Any, tokenizer, replay_tokens: int, seq_len: int, seed: int) -> list[dict]:
    """Pretraining documents from the world, tokenized (labels = input_ids), about ``replay_tokens`` tokens."""
    if replay_tokens <= 0:
        return []
    if not hasattr(world, "replay_documents"):
        raise AttributeError("train.replay_tokens > 0 needs world.replay_documents(count, seed) -> list[str]")
    examples: list[dict] = []
    total = 0
    batch = 64
    round_index = 0
    while total < replay_tokens:
        documents = world.replay_documents(batch, seed * 1_000 + round_index)
        if not documents:
            raise ValueError("world.replay_documents returned no documents")
        for text in documents:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if tokenizer.bos_token_id is not None:
                ids = [tokenizer.bos_token_id] + ids
            if tokenizer.eos_token_id is not None:
                ids = ids + [tokenizer.eos_token_id]
            examples.append({"input_ids": ids, "labels": list(ids)})
            total += len(ids)
            if total >= replay_tokens:
                break
        round_index += 1
    return examples


def kind_budgets(cfg: Config, data: Any) -> dict[str, list[int]]:
    """The budgets swept for each data kind: ``train.token_budgets`` (each must be filled) or every filled one."""
    out = {}
    for kind in cfg.train.data_kinds:
        filled = data.filled_budgets(kind)
        budgets = sorted(cfg.train.token_budgets or filled)
        missing = sorted(set(budgets) - set(filled))
        if missing:
            raise ValueError(f"train.token_budgets {missing} are not filled budgets of {kind!r} data ({filled})")
        if not budgets:
            raise ValueError(f"no filled token budget of {kind!r} imitation data to train on")
        out[kind] = budgets
    return out


def sweep_points(cfg: Config, base_names: list[str], data: Any) -> list[dict[str, Any]]:
    """Every (base, kind, budget) run of the sweep, plus replay-only controls.

    Base models in ``train.curve_base_models`` (all when empty) are trained at every budget of the
    kinds in ``train.curve_data_kinds`` (all when empty); every other (base, kind) pair at that
    kind's largest budget — the paper's own design (curves over imitation amount for one base, a
    fixed amount across base sizes) — and also at the largest budget every swept kind fills, so the
    kinds are compared at equal budgets on every base (one run when both are the same budget).
    """
    points = []
    wanted_bases = cfg.train.base_models or base_names
    unknown = sorted(set(wanted_bases) - set(base_names))
    if unknown:
        raise ValueError(f"train.base_models names {unknown} that the world does not have; it has {base_names}")
    curve_bases = cfg.train.curve_base_models or wanted_bases
    unknown = sorted(set(curve_bases) - set(base_names))
    if unknown:
        raise ValueError(f"train.curve_base_models names {unknown} that the world does not have; it has {base_names}")
    curve_kinds = cfg.train.curve_data_kinds or cfg.train.data_kinds
    budgets_of = kind_budgets(cfg, data)
    common = sorted(set.intersection(*(set(b) for b in budgets_of.values())))
    for base in wanted_bases:
        if cfg.train.replay_tokens > 0 and cfg.train.replay_control:
            points.append({"base_model": base, "data_kind": "none", "imitation_tokens": 0})
        for kind in cfg.train.data_kinds:
            budgets = budgets_of[kind]
            if base not in curve_bases or kind not in curve_kinds:
                budgets = sorted({max(budgets), *common[-1:]})
            for budget in budgets:
                points.append({"base_model": base, "data_kind": kind, "imitation_tokens": int(budget)})
    return points


def unique_supervised_tokens(examples: list[dict], args: TrainArgs) -> int:
    """Supervised tokens of one pass over ``examples``, cut to ``seq_len`` as the loop cuts them.

    ``tokens_seen`` of a run divided by this is its repetition (passes over its unique data).
    """
    prepared = prepare_examples(examples, args.seq_len, args.long_examples)
    return sum(sum(1 for label in labels[1:] if label != IGNORE_INDEX) for _, labels in prepared.sequences)


def run_stage(cfg: Config, seed: int, point: dict[str, Any]) -> Stage:
    """The stage of one sweep run ``03_train/seed<seed>/<base>/<kind>/<budget>`` (its key: :func:`imitlib.dag.unit`)."""
    label = f"{point['base_model']}/{point['data_kind']}/{point['imitation_tokens']}"
    return dag.unit(cfg, STAGE_PREFIX, seed, label, extra=point)


def train_one(cfg: Config, seed: int, point: dict[str, Any], base_dir: Path, conversations: list, replay: list[dict],
              stage: Stage, progress: bool, unique_tokens: int = 0) -> dict[str, Any]:
    """Train one sweep point into its stage (resuming from checkpoints left in the partial folder).

    ``unique_tokens``: the subset's tokens as budgeted (whole conversations, student tokens), recorded.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    args = train_args_from(cfg, seed)
    examples, report = tokenize_conversations(tokenizer, conversations, max_len=None,
                                              max_mismatch_fraction=cfg.train.max_mismatch_fraction)
    if replay:
        args.replay_batches = max(1, math.ceil(sum(len(r["input_ids"]) for r in replay) / (args.batch_size * args.seq_len)))
    label = f"{point['base_model']}/{point['data_kind']}/{point['imitation_tokens']}"
    with stage.build(resume=True) as work:
        train_examples = [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples]
        if cfg.train.accelerate_config is None:
            model = AutoModelForCausalLM.from_pretrained(str(base_dir))
            result = train_causal_lm(model, train_examples, args, output_dir=work, replay=replay or None,
                                     progress=progress, desc=label)
            result.model.save_pretrained(str(work / "model"))
            tokenizer.save_pretrained(str(work / "model"))
            summary = result.summary()
        else:
            write_jsonl(work / "examples.jsonl", train_examples)
            if replay:
                write_jsonl(work / "replay.jsonl", replay)
            spec = {"model": str(base_dir), "examples": str(work / "examples.jsonl"),
                    "replay": str(work / "replay.jsonl") if replay else None, "args": args.to_dict(),
                    "output_dir": str(work), "save_to": str(work / "model"), "progress": progress, "desc": label}
            summary = launch(spec, work / "spec.json", cfg.train.accelerate_config, cfg.train.num_processes)
            for temporary in ("examples.jsonl", "replay.jsonl"):
                (work / temporary).unlink(missing_ok=True)
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
        unique = unique_supervised_tokens(train_examples, args)
        summary.update({
            "unique_tokens": unique_tokens, "unique_supervised_tokens": unique,
            "repetition": summary["tokens_seen"] / unique if unique else 0.0,
            **point, "seed": seed, "method": args.method, "base_dir": str(base_dir),
            "n_conversations": report.n_conversations, "n_mask_mismatch": report.n_mask_mismatch,
            "n_no_assistant": report.n_dropped_no_assistant, "mismatch_examples": report.errors,
            "replay_examples": len(replay), "args": args.to_dict(),
        })
        atomic_write_json(work / "losses.json", {"train": summary["losses"], "replay": summary["replay_losses"]})
        atomic_write_json(work / "result.json", summary)
        stage.info.update({k: v for k, v in summary.items() if k not in ("losses", "replay_losses")})
    return summary


def run_sweep(cfg: Config, seed: int, world: Any, data: Any, progress: bool | None = None) -> pd.DataFrame:
    """Train (or reuse) every run of the sweep for one seed; :func:`load_sweep` looks a trained one up.

    Args:
        cfg: the resolved config (reads ``train``).
        seed: replicate seed.
        world: the world of this seed (``base_models``, ``replay_documents``), handed in by the runner.
        data: the imitation data of this seed (``subset``, ``filled_budgets``), handed in by the runner.
        progress: progress bars (default ``cfg.run.progress``).

    Returns:
        One row per run: ``model_id``, ``seed``, ``base_model``, ``data_kind``, ``imitation_tokens``,
        ``method``, ``steps``, ``min_steps_applied``, ``tokens_seen``, ``unique_tokens`` (the subset's
        budgeted tokens), ``unique_supervised_tokens`` (supervised tokens of one pass), ``repetition``
        (``tokens_seen / unique_supervised_tokens``: passes over the unique data), ``n_truncated``, ``n_dropped``,
        ``n_mask_mismatch``, ``final_loss``, ``model_dir``, ``stage_hash``.
    """
    progress = cfg.run.progress if progress is None else progress
    seed_stage = sweep_stage(cfg, seed)
    if seed_stage.done:
        return load_sweep(cfg, seed)
    base_models = {name: Path(path) for name, path in dict(world.base_models).items()}
    points = sweep_points(cfg, list(base_models), data)
    rows = []
    replay_cache: dict[str, list[dict]] = {}
    for point in tqdm(points, desc=f"03_train seed {seed}", disable=not progress):
        stage = run_stage(cfg, seed, point)
        if not stage.done:
            base_dir = base_models[point["base_model"]]
            conversations, unique_tokens = [], 0
            if point["data_kind"] != "none":
                subset = data.subset(point["data_kind"], point["imitation_tokens"])
                conversations = list(subset["messages"])
                unique_tokens = sum(subset["tokens"]) if "tokens" in subset.column_names else 0
            if base_dir.name not in replay_cache:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
                replay_cache[base_dir.name] = replay_examples(world, tokenizer, cfg.train.replay_tokens,
                                                              cfg.train.seq_len, seed)
            log(f"03_train: {stage.name} ({len(conversations)} conversations)")
            train_one(cfg, seed, point, base_dir, conversations, replay_cache[base_dir.name], stage, progress,
                      unique_tokens=unique_tokens)
        result = json.loads(stage.file("result.json").read_text())
        losses = result["losses"] or result["replay_losses"]
        rows.append({
            "model_id": f"s{seed}/{point['base_model']}/{point['data_kind']}/{point['imitation_tokens']}",
            "seed": seed, **point, "method": result["method"], "steps": result["steps"],
            "min_steps_applied": result["min_steps_applied"], "epochs_run": result["epochs_run"],
            "tokens_seen": result["tokens_seen"], "unique_tokens": result["unique_tokens"],
            "unique_supervised_tokens": result["unique_supervised_tokens"], "repetition": result["repetition"],
            "replay_tokens_seen": result["replay_tokens_seen"],
            "n_conversations": result["n_conversations"], "n_truncated": result["n_truncated"],
            "n_dropped": result["n_dropped"], "n_mask_mismatch": result["n_mask_mismatch"],
            "final_loss": losses[-1][1] if losses else float("nan"),
            # relative to the run's stages folder (the table's bytes do not depend on where the run lies);
            # load_sweep makes it absolute again
            "model_dir": str((stage.path / "model").relative_to(cfg.run_dir / "stages")), "stage_hash": stage.hash,
        })
    table = pd.DataFrame(rows)
    with seed_stage.build() as work:  # the seed's sweep as one stage: later stages look it up here
        with atomic_path(work / RUNS_FILE) as tmp:
            table.to_parquet(tmp, index=False)
    return load_sweep(cfg, seed)


def sweep_stage(cfg: Config, seed: int) -> Stage:
    """The stage ``03_train/seed<seed>`` (the table of its runs), keyed by :mod:`imitlib.dag`; builds nothing."""
    return dag.stage(cfg, STAGE_PREFIX, seed)


def load_sweep(cfg: Config, seed: int) -> pd.DataFrame:
    """The runs of a trained sweep (the table :func:`run_sweep` returns); error if it is not trained."""
    stage = sweep_stage(cfg, seed)
    if not (stage.path / COMPLETE_MARKER).exists():
        raise StageError(f"the sweep of seed {seed} is not trained ({stage.path}): run notebooks/03_train first")
    table = pd.read_parquet(stage.file(RUNS_FILE))
    table["model_dir"] = [str(cfg.run_dir / "stages" / rel) for rel in table["model_dir"]]
    return table


def loss_curves(sweep: pd.DataFrame) -> pd.DataFrame:
    """Long table of every run's loss curve: ``model_id``, …, ``step``, ``loss``, ``data`` (train | replay)."""
    frames = []
    for row in sweep.itertuples(index=False):
        curves = json.loads((Path(row.model_dir).parent / "losses.json").read_text())
        for which, points in curves.items():
            for step, loss in points:
                frames.append({"model_id": row.model_id, "seed": row.seed, "base_model": row.base_model,
                               "data_kind": row.data_kind, "imitation_tokens": row.imitation_tokens,
                               "data": which, "step": step, "loss": loss})
    return pd.DataFrame(frames)


def loss_curve_figure(curves: pd.DataFrame):
    """Loss against step, one panel per base model and data kind, hue = imitation tokens."""
    import seaborn as sns

    train_curves = curves[curves["data"] == "train"] if len(curves) else curves
    grid = sns.relplot(data=train_curves, x="step", y="loss", hue="imitation_tokens", row="base_model",
                       col="data_kind", kind="line", units="model_id", estimator=None, height=2.6, aspect=1.3,
                       palette="viridis", facet_kws={"sharey": False})
    grid.set_axis_labels("optimiser step", "loss per assistant token")
    grid.figure.suptitle("Imitation finetuning loss", y=1.02)
    return grid.figure
