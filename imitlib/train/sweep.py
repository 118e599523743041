"""The imitation sweep: base size × imitation token budget × data kind, one cached stage per run.

Each run is the stage ``03_train/seed<seed>/<base>/<kind>/<budget>`` holding ``model/`` (full
weights or a LoRA adapter, saved HF-style with the tokenizer), ``losses.json`` (the loss curve) and
``result.json`` (steps, tokens, truncated / dropped / mismatched counts, whether ``min_steps``
applied). With ``train.replay_tokens > 0`` every run also sees the same replay budget of pretraining
text, and ``train.replay_control`` adds a zero-imitation, replay-only run per base model
(``data_kind = "none"``, ``imitation_tokens = 0``) so replay and imitation effects can be told apart.

The sweep reads a *world* (``base_models``: name → model folder; ``replay_documents(count, seed)``:
pretraining texts; ``stage``) and the imitation data (``subset(kind, budget)``,
``filled_budgets(kind)``, ``path``); by default ``imitlib.world.load_world`` and
``imitlib.data.stage.load_imitation_data``.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from imitlib.config import Config
from imitlib.stages import Stage, atomic_write_json, log
from imitlib.train.loop import TrainArgs, train_causal_lm
from imitlib.train.tokenize import tokenize_conversations

STAGE_PREFIX = "03_train"


def train_args_from(cfg: Config, seed: int) -> TrainArgs:
    """TrainArgs of one sweep run from ``cfg.train``."""
    t = cfg.train
    return TrainArgs(
        lr=t.lr, epochs=t.epochs, max_steps=t.max_steps, min_steps=t.min_steps, batch_size=t.batch_size,
        seq_len=t.seq_len, grad_accum=t.grad_accum, warmup_steps=t.warmup_steps, schedule=t.schedule,
        optimizer=t.optimizer, weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, seed=seed,
        method=t.method, lora_r=t.lora_r, lora_alpha=t.lora_alpha, lora_dropout=t.lora_dropout,
        lora_target_modules=t.lora_target_modules, packing=t.packing, log_every=t.log_every,
        checkpoint_every=t.checkpoint_every, bf16=t.bf16, gradient_checkpointing=t.gradient_checkpointing,
    )


def _hash_of(obj: Any, what: str) -> str:
    stage = getattr(obj, "stage", None)
    if stage is not None and hasattr(stage, "hash"):
        return str(stage.hash)
    if getattr(obj, "stage_hash", None):
        return str(obj.stage_hash)
    if getattr(obj, "path", None) is not None:
        return Path(obj.path).name
    raise AttributeError(f"the {what} object {type(obj).__name__} has no stage, stage_hash or path to key runs on")


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


def sweep_points(cfg: Config, base_names: list[str], data: Any) -> list[dict[str, Any]]:
    """Every (base, kind, budget) run of the sweep, plus replay-only controls.

    Base models in ``train.curve_base_models`` (all when empty) are trained at every budget of the
    kinds in ``train.curve_data_kinds`` (all when empty); every other (base, kind) pair only at that
    kind's largest budget — the paper's own design (curves over imitation amount for one base,
    a fixed amount across base sizes).
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
    for base in wanted_bases:
        if cfg.train.replay_tokens > 0 and cfg.train.replay_control:
            points.append({"base_model": base, "data_kind": "none", "imitation_tokens": 0})
        for kind in cfg.train.data_kinds:
            filled = data.filled_budgets(kind)
            budgets = cfg.train.token_budgets or filled
            missing = sorted(set(budgets) - set(filled))
            if missing:
                raise ValueError(f"train.token_budgets {missing} are not filled budgets of {kind!r} data ({filled})")
            if not budgets:
                raise ValueError(f"no filled token budget of {kind!r} imitation data to train on")
            if base not in curve_bases or kind not in curve_kinds:
                budgets = [max(budgets)]
            for budget in budgets:
                points.append({"base_model": base, "data_kind": kind, "imitation_tokens": int(budget)})
    return points


def run_stage(cfg: Config, seed: int, point: dict[str, Any], upstream: list[str]) -> Stage:
    name = f"{STAGE_PREFIX}/seed{seed}/{point['base_model']}/{point['data_kind']}/{point['imitation_tokens']}"
    return Stage(cfg, name, reads=["train"], upstream=upstream, extra={**point, "seed": seed}, seeds=[seed])


def train_one(cfg: Config, seed: int, point: dict[str, Any], base_dir: Path, conversations: list, replay: list[dict],
              stage: Stage, progress: bool) -> dict[str, Any]:
    """Train one sweep point into its stage (resuming from checkpoints left in the partial folder)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from imitlib.train.launch import launch, read_jsonl, write_jsonl

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
        summary.update({
            **point, "seed": seed, "method": args.method, "base_dir": str(base_dir),
            "n_conversations": report.n_conversations, "n_mask_mismatch": report.n_mask_mismatch,
            "n_no_assistant": report.n_dropped_no_assistant, "mismatch_examples": report.errors,
            "replay_examples": len(replay), "args": args.to_dict(),
        })
        atomic_write_json(work / "losses.json", {"train": summary["losses"], "replay": summary["replay_losses"]})
        atomic_write_json(work / "result.json", summary)
        stage.info.update({k: v for k, v in summary.items() if k not in ("losses", "replay_losses")})
    return summary


def run_sweep(cfg: Config, seed: int, world: Any | None = None, data: Any | None = None,
              progress: bool | None = None, build: bool = True) -> pd.DataFrame:
    """Train (or reuse) every run of the sweep for one seed.

    Args:
        cfg: the resolved config (reads ``train``).
        seed: replicate seed.
        world: the world of this seed (``base_models``, ``replay_documents``, ``stage``);
            default ``imitlib.world.load_world(cfg, seed)``.
        data: the imitation data of this seed; default ``imitlib.data.stage.load_imitation_data``.
        progress: progress bars (default ``cfg.run.progress``).
        build: train runs that are not cached yet; with ``False`` a missing run is an error
            (later stages use this to find the sweep without ever training).

    Returns:
        One row per run: ``model_id``, ``seed``, ``base_model``, ``data_kind``, ``imitation_tokens``,
        ``method``, ``steps``, ``min_steps_applied``, ``tokens_seen``, ``n_truncated``, ``n_dropped``,
        ``n_mask_mismatch``, ``final_loss``, ``model_dir``, ``stage_hash``.
    """
    progress = cfg.run.progress if progress is None else progress
    if world is None:
        from imitlib.world import load_world

        world = load_world(cfg, seed)
    if data is None:
        from imitlib.data.stage import load_imitation_data

        data = load_imitation_data(cfg, seed, world)
    base_models = {name: Path(path) for name, path in dict(world.base_models).items()}
    points = sweep_points(cfg, list(base_models), data)
    upstream = [_hash_of(world, "world"), _hash_of(data, "imitation data")]
    rows = []
    replay_cache: dict[str, list[dict]] = {}
    for point in tqdm(points, desc=f"03_train seed {seed}", disable=not progress):
        stage = run_stage(cfg, seed, point, upstream)
        if not build and not (stage.path / "COMPLETE").exists():
            raise FileNotFoundError(f"sweep run {stage.name} ({stage.hash}) is not trained: run notebooks/03_train first")
        if build and not stage.done:
            base_dir = base_models[point["base_model"]]
            if point["data_kind"] == "none":
                conversations = []
            else:
                subset = data.subset(point["data_kind"], point["imitation_tokens"])
                conversations = list(subset["messages"])
            if base_dir.name not in replay_cache:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
                replay_cache[base_dir.name] = replay_examples(world, tokenizer, cfg.train.replay_tokens,
                                                              cfg.train.seq_len, seed)
            log(f"03_train: {stage.name} ({len(conversations)} conversations)")
            train_one(cfg, seed, point, base_dir, conversations, replay_cache[base_dir.name], stage, progress)
        result = json.loads(stage.file("result.json").read_text())
        losses = result["losses"] or result["replay_losses"]
        rows.append({
            "model_id": f"s{seed}/{point['base_model']}/{point['data_kind']}/{point['imitation_tokens']}",
            "seed": seed, **point, "method": result["method"], "steps": result["steps"],
            "min_steps_applied": result["min_steps_applied"], "epochs_run": result["epochs_run"],
            "tokens_seen": result["tokens_seen"], "replay_tokens_seen": result["replay_tokens_seen"],
            "n_conversations": result["n_conversations"], "n_truncated": result["n_truncated"],
            "n_dropped": result["n_dropped"], "n_mask_mismatch": result["n_mask_mismatch"],
            "final_loss": losses[-1][1] if losses else float("nan"),
            "model_dir": str(stage.path / "model"), "stage_hash": stage.hash,
        })
    return pd.DataFrame(rows)


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


def sweep_built(cfg: Config, seed: int) -> bool:
    """True when every run of this seed's sweep is trained (raises when its world or data is missing)."""
    try:
        run_sweep(cfg, seed, progress=False, build=False)
    except FileNotFoundError:
        return False
    return True


def run_sweeps(cfg: Config, progress: bool | None = None) -> pd.DataFrame:
    """:func:`run_sweep` for every seed of ``cfg.run.seeds``; the table is also saved as
    ``<tables_dir>/03_train_runs.csv``."""
    from imitlib.stages import atomic_path

    from imitlib.parallel import for_seeds

    if progress is not None and progress != cfg.run.progress:
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"progress": progress})})
    frames = for_seeds(run_sweep, cfg, desc="03_train seeds", done=sweep_built)
    table = pd.concat(frames, ignore_index=True)
    with atomic_path(cfg.tables_dir / "03_train_runs.csv") as tmp:
        table.to_csv(tmp, index=False)
    return table
