"""Imitation finetuning throughput: imitlib's packed training loop vs transformers ``Trainer`` with padding.

Both sides train the same model (the default world's ``base-m``) on the same imitation
conversations (the default study's broad data at one token budget), with the same optimiser
(AdamW, warmup + cosine, clipping at 1.0), the same optimiser steps and the same conversations in
every step: the step plan of ``imitlib.train.loop`` (shuffled, packed into rows of ``seq_len``)
is replayed in the ``Trainer`` through a batch sampler, each step's conversations padded per batch
by ``DataCollatorForSeq2Seq`` (the usual HF recipe). So both see the same supervised tokens and the
final losses must agree (tolerance: ``--loss-tolerance``, relative).

A second comparison (``imitation_finetuning_vs_flattening.json``) takes the strongest HF
configuration that trains correctly here: ``Trainer`` with ``DataCollatorWithFlattening`` (padding-free,
each step's conversations in one row, position ids restarting per example) and
``model.config.use_cache = False``: with the default KV cache transformers skips its packed-sequence
mask and attention crosses examples on a CPU (``tests/test_flattening_isolation.py``).

Every result also records the model FLOP rate (6 x parameters x input tokens per second, attention
excluded) as a share of this machine's matmul peak, measured in the same run on square matmuls.

Usage: python benchmarks/bench_training.py [--model base-m|teacher] [--bf16] [--model-dir DIR] [--budget 20000]
       [--epochs 3] [--repeats 5]
Targets: ≥ 1.5× the padded Trainer and ≥ 1.0× the flattening Trainer (supervised tokens/s).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from harness import compare, write  # noqa: E402
from synthetic import synthetic_conversations, synthetic_model  # noqa: E402

from imitlib.config import PROJECT_ROOT  # noqa: E402
from imitlib.train.loop import IGNORE_INDEX, TrainArgs, make_plan, prepare_examples, train_causal_lm  # noqa: E402
from imitlib.train.tokenize import tokenize_conversations  # noqa: E402

STUDY_THREADS = 2


def default_inputs(budget: int, kind: str = "broad", seed: int = 0,
                   run_dir: Path = PROJECT_ROOT / "outputs" / "default",
                   model: str = "base-m") -> tuple[Path, list[list[dict]], str] | None:
    """The default study's ``model`` folder (a base or the teacher) and imitation conversations of
    one filled budget.

    Looks through the completed ``02_imitation_data/seed{seed}`` folders (newest first) for one
    whose world folder holds ``models/<model>``; None when there is none.
    """
    from datasets import load_from_disk

    from imitlib.study.imitation_data import ImitationData

    stages = run_dir / "stages"
    candidates = []
    for folder in (stages / "02_imitation_data" / f"seed{seed}").glob("*/"):
        if not (folder / "COMPLETE").exists():
            continue
        manifest = json.loads((folder / "manifest.json").read_text())
        world_dir = stages / "01_world" / f"seed{seed}" / manifest["upstream"][0]
        info = json.loads((folder / "summary.json").read_text())["budgets"].get(kind, {}).get(str(budget))
        if (world_dir / "COMPLETE").exists() and (world_dir / "models" / model).exists() and info and info["filled"]:
            candidates.append((manifest["timings"]["finished"], folder, world_dir / "models" / model))
    if not candidates:
        return None
    _, folder, model_dir = max(candidates)
    data = ImitationData(path=folder, conversations=load_from_disk(str(folder / "conversations")),
                         summary=json.loads((folder / "summary.json").read_text()))
    conversations = [list(row["messages"]) for row in data.subset(kind, budget)]
    return model_dir, conversations, f"default study seed {seed}: {model_dir}, {folder} ({kind}, budget {budget})"


def world_shape(model: str) -> dict[str, int]:
    """The Llama shape of one of the default world's models (``base-*`` or ``teacher``), from its params."""
    from imitlib.config import load

    world = load(["params/default.yaml"], check_files=False).world
    sizes = {size.name: size for size in [*world.base_models, world.teacher_model]}
    if model not in sizes:
        raise SystemExit(f"--model {model!r}: the default world has {sorted(sizes)}")
    size = sizes[model]
    return {"hidden_size": size.hidden_size, "layers": size.layers, "heads": size.heads,
            "intermediate_size": size.intermediate_size}


def synthetic_inputs(folder: Path, count: int = 200, model: str = "base-m") -> tuple[Path, list[list[dict]], str]:
    """A randomly initialised Llama of a default-world model's shape and deterministic synthetic conversations."""
    shape = world_shape(model)
    model_dir = synthetic_model(folder, **shape)
    return model_dir, synthetic_conversations(count), f"synthetic: {count} conversations, Llama of {model}'s shape {shape}"


def planned_trainer(model, dataset: list[dict], collator, step_batches: list[list[int]], args: TrainArgs,
                    workdir: Path):
    """The stock ``Trainer`` with the study's optimiser settings, reading one batch per planned step
    (``step_batches``: the conversations of each of our steps), so both sides see the same data."""
    from torch.utils.data import DataLoader
    from transformers import PrinterCallback, Trainer, TrainingArguments

    class PlannedTrainer(Trainer):
        def get_train_dataloader(self) -> DataLoader:
            return self.accelerator.prepare(DataLoader(dataset, batch_sampler=step_batches, collate_fn=collator))

    training_args = TrainingArguments(
        output_dir=str(workdir), max_steps=len(step_batches), learning_rate=args.lr,
        lr_scheduler_type=args.schedule, warmup_steps=args.warmup_steps, weight_decay=args.weight_decay,
        adam_beta1=args.adam_betas[0], adam_beta2=args.adam_betas[1], max_grad_norm=args.max_grad_norm,
        optim="adamw_torch", per_device_train_batch_size=1, gradient_accumulation_steps=1,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True, bf16=args.bf16,
        seed=args.seed, dataloader_num_workers=0, remove_unused_columns=False,
    )
    trainer = PlannedTrainer(model=model, args=training_args, train_dataset=dataset, data_collator=collator)
    trainer.remove_callback(PrinterCallback)  # the loss is read from log_history, not printed
    return trainer


def _train(trainer) -> tuple[float, list[float]]:
    output = trainer.train()
    return output.metrics["train_runtime"], [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def trainer_side(model, tokenizer, sequences: list[tuple[list[int], list[int]]], step_batches: list[list[int]],
                 args: TrainArgs, workdir: Path) -> tuple[float, list[float]]:
    """Train ``model`` in place with ``transformers.Trainer``: one padded batch per step, as planned.

    Returns:
        (seconds inside ``trainer.train()``, the logged loss of every step).
    """
    from transformers import DataCollatorForSeq2Seq

    dataset = [{"input_ids": ids, "labels": labels} for ids, labels in sequences]
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
    return _train(planned_trainer(model, dataset, collator, step_batches, args, workdir))


def flattening_side(model, sequences: list[tuple[list[int], list[int]]], step_batches: list[list[int]],
                    args: TrainArgs, workdir: Path) -> tuple[float, list[float]]:
    """Train ``model`` in place with ``Trainer`` + ``DataCollatorWithFlattening``: one row per step."""
    from transformers import DataCollatorWithFlattening

    dataset = [{"input_ids": ids, "labels": labels} for ids, labels in sequences]
    model.config.use_cache = False  # with a KV cache the packed-sequence mask is skipped (examples leak)
    return _train(planned_trainer(model, dataset, DataCollatorWithFlattening(separator_id=IGNORE_INDEX),
                                  step_batches, args, workdir))


def matmul_peak_gflops(sizes: tuple[int, ...] = (512, 1024, 2048), dtype=torch.float32, repeats: int = 5) -> dict:
    """Best GFLOP/s of square matmuls (2 n^3 FLOPs) at the current torch thread count."""
    best: dict[str, float] = {}
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)
        rates = []
        for _ in range(repeats):
            started = time.perf_counter()
            torch.mm(a, b)
            rates.append(2 * n**3 / (time.perf_counter() - started) / 1e9)
        best[str(n)] = max(rates)
    return {"dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads(), "by_size": best,
            "peak": max(best.values())}


def padded_supervised_tokens(tokenizer, sequences, step_batches) -> tuple[int, float]:
    """Supervised tokens (shifted labels) of the padded batches, and the share of padded positions."""
    from transformers import DataCollatorForSeq2Seq

    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
    supervised = real = total = 0
    for indices in step_batches:
        batch = collator([{"input_ids": sequences[i][0], "labels": sequences[i][1]} for i in indices])
        supervised += int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        real += int(batch["attention_mask"].sum())
        total += batch["input_ids"].numel()
    return supervised, 1 - real / total


def benchmark(model_dir: Path, conversations: list[list[dict]], args: TrainArgs, repeats: int = 5,
              loss_tolerance: float = 0.02, source: str = "", results_dir: Path | None = None,
              name: str = "imitation_finetuning",
              baselines: tuple[str, ...] = ("padded", "flattening")) -> dict[str, Any]:
    """Measure both sides alternately and write ``<results_dir>/<name>.json``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    pristine = AutoModelForCausalLM.from_pretrained(str(model_dir))
    examples, report = tokenize_conversations(tokenizer, conversations, max_len=None)
    examples = [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples]
    prepared = prepare_examples(examples, args.seq_len, args.long_examples)
    plan = make_plan(prepared, None, args, world_size=1)
    step_batches = [[i for rows in step for row in rows for i in row] for step in plan.main]
    supervised, pad_share = padded_supervised_tokens(tokenizer, prepared.sequences, step_batches)
    packed_positions = sum(len(rows) * args.seq_len for step in plan.main for rows in step)
    extra: dict[str, Any] = {"plan": {
        "optimizer_steps": len(plan.main), "conversations": len(examples),
        "tokenize_report": {k: v for k, v in vars(report).items() if isinstance(v, (int, float))},
        "supervised_tokens_trainer": supervised, "trainer_padding_share": pad_share,
        "train_args": args.to_dict(),
    }, "losses": {}}
    ours_run: dict[str, Any] = {}

    def ours() -> float:
        model = copy.deepcopy(pristine)
        result = train_causal_lm(model, examples, args, progress=False)
        ours_run.update(losses=[loss for _, loss in result.losses], tokens=result.tokens_seen)
        extra["plan"].update(supervised_tokens_ours=result.tokens_seen, input_tokens=result.input_tokens_seen,
                             packed_row_fill=result.input_tokens_seen / packed_positions)
        if result.tokens_seen != supervised:
            raise AssertionError(f"supervised tokens differ: ours {result.tokens_seen}, Trainer {supervised}")
        return float(result.tokens_seen)

    def checked_losses(label: str, losses: list[float]) -> None:
        ours_final, their_final = ours_run["losses"][-1], losses[-1]
        relative = abs(ours_final - their_final) / abs(their_final)
        extra["losses"][label] = {
            "ours_final": ours_final, "their_final": their_final, "relative_difference": relative,
            "tolerance_relative": loss_tolerance, "within_tolerance": relative <= loss_tolerance,
            "ours_logged": ours_run["losses"], "theirs_every_step": losses,
        }

    def padded() -> float:
        model = copy.deepcopy(pristine)
        with tempfile.TemporaryDirectory(prefix="bench-trainer-") as workdir:
            _, losses = trainer_side(model, tokenizer, prepared.sequences, step_batches, args, Path(workdir))
        checked_losses("padded", losses)
        return float(supervised)

    def flattening() -> float:
        model = copy.deepcopy(pristine)
        with tempfile.TemporaryDirectory(prefix="bench-flatten-") as workdir:
            _, losses = flattening_side(model, prepared.sequences, step_batches, args, Path(workdir))
        checked_losses("flattening", losses)
        return float(supervised)

    sides = {
        "padded": (name, "transformers Trainer (DataCollatorForSeq2Seq padding)", padded, 1.5),
        "flattening": (f"{name}_vs_flattening",
                       "transformers Trainer (DataCollatorWithFlattening, padding-free, use_cache=False)",
                       flattening, 1.0),
    }
    # what autocast costs in loss: our measured (bf16) runs against the same run in float32, once
    float32_losses = ([loss for _, loss in train_causal_lm(copy.deepcopy(pristine), examples,
                                                           args.model_copy(update={"bf16": False}),
                                                           progress=False).losses] if args.bf16 else None)
    n_params = sum(p.numel() for p in pristine.parameters())
    # the peak of the precision the matmuls run in (bf16 autocast: bf16 matmuls)
    peak = matmul_peak_gflops(dtype=torch.bfloat16 if args.bf16 else torch.float32)
    results = {}
    for key in baselines:
        result_name, label, work, target = sides[key]
        extra["losses"] = {}
        result = compare(
            result_name, ("imitlib train_causal_lm (packing)", ours), (label, work),
            units="supervised tokens/s", target_ratio=target, repeats=repeats,
            notes=(f"{source}; {n_params} parameters; {len(examples)} conversations, {len(plan.main)} optimiser "
                   f"steps, lr {args.lr}, epochs {args.epochs}, batch {args.batch_size} rows x {args.seq_len}, "
                   f"{'bf16 autocast on both sides' if args.bf16 else 'float32'}, torch threads "
                   f"{torch.get_num_threads()}; each run trains a fresh copy of the same weights"),
            extra=extra, results_dir=results_dir,
        )
        if float32_losses is not None:
            final32, final16 = float32_losses[-1], ours_run["losses"][-1]
            relative = abs(final16 - final32) / abs(final32)
            result["bf16_vs_float32"] = {
                "float32_final": final32, "bf16_final": final16, "relative_difference": relative,
                "tolerance_relative": loss_tolerance, "within_tolerance": relative <= loss_tolerance,
                "float32_logged": float32_losses, "bf16_logged": ours_run["losses"]}
        # model FLOPs: 6 x parameters x input tokens (the real tokens both sides process; attention excluded)
        input_per_supervised = extra["plan"]["input_tokens"] / supervised
        gflops = {side: result[side]["median"] * input_per_supervised * 6 * n_params / 1e9
                  for side in ("ours", "baseline")}
        result["model_flops"] = {
            "parameters": n_params, "input_tokens_per_supervised_token": input_per_supervised,
            "gflops_median": gflops, "matmul_peak_gflops": peak,
            "share_of_peak_median": {side: value / peak["peak"] for side, value in gflops.items()},
            "share_of_peak_goal": 0.40,
        }
        write(result_name, result, results_dir)
        results[key] = result
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", help="a model folder (default: the default world's base-m)")
    parser.add_argument("--budget", type=int, default=20000, help="imitation token budget of the default study (its largest)")
    parser.add_argument("--kind", default="broad", choices=["broad", "task"])
    parser.add_argument("--epochs", type=float, default=1.0, help="passes over the data (the study: 3)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=STUDY_THREADS, help="torch threads (the study: 2)")
    parser.add_argument("--baselines", default="padded,flattening",
                        help="comma-separated: padded (Trainer + padding), flattening (Trainer padding-free)")
    parser.add_argument("--loss-tolerance", type=float, default=0.02, help="relative, on the final step's loss")
    parser.add_argument("--model", default="base-m",
                        help="which default-world model: a base (base-m, the largest) or teacher; its folder from "
                             "a finished default study, else a random Llama of its shape")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on both sides (peak: bf16 matmuls)")
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    torch.set_num_threads(options.threads)
    args = TrainArgs(lr=options.lr, epochs=options.epochs, batch_size=options.batch_size, seq_len=options.seq_len,
                     warmup_steps=options.warmup_steps, schedule="cosine", packing=True, seed=0, log_every=1,
                     bf16=options.bf16)
    with tempfile.TemporaryDirectory(prefix="bench-training-") as scratch:
        found = default_inputs(options.budget, options.kind, model=options.model)
        if found is None:
            model_dir, conversations, source = synthetic_inputs(Path(scratch) / "model", model=options.model)
        else:
            model_dir, conversations, source = found
        if options.model_dir:
            model_dir, source = Path(options.model_dir), f"{source} (model {options.model_dir})"
        name = "imitation_finetuning"
        name += "" if options.model == "base-m" else f"_{options.model}"
        name += "_bf16" if options.bf16 else ""
        name += "" if options.threads == STUDY_THREADS else f"_threads{options.threads}"
        benchmark(model_dir, conversations, args, options.repeats, options.loss_tolerance, source, name=name,
                  baselines=tuple(options.baselines.split(",")))


if __name__ == "__main__":
    main()
