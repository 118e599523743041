"""The training loop of the study: one entry point for pretraining, chat tuning and imitation.

``train_causal_lm(model, examples, args)`` trains a transformers causal LM on tokenized examples
(``{"input_ids", "labels"}``, label ``-100`` = no loss). It runs through ``accelerate`` so the same
call works in a notebook's process on a CPU and, unchanged, under ``accelerate launch`` (DDP, FSDP,
DeepSpeed). Features:

* packing: short examples share a row; ``position_ids`` restart at 0 for each example and no
  attention mask is passed, so transformers builds a block-diagonal causal mask (no attention across
  packed examples; ``tests/test_train.py`` checks packed and separate runs give the same loss);
* the loss is the token-level mean over every supervised token of an optimiser step (across
  gradient-accumulation micro-batches and processes), so accumulation does not change the maths;
* replay: micro-batches of other data (e.g. pretraining text) mixed into chosen steps, with their own
  token-mean loss added to the step's loss;
* full finetuning or LoRA (peft); AdamW or Adafactor (``scale_parameter=True, relative_step=False``);
  warmup + cosine / linear / constant schedules; bf16 autocast; gradient checkpointing;
* checkpoints (model, optimizer, scheduler, RNG state) every N steps and exact resume: the data order
  is a pure function of the seed, so a resumed run ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from tqdm.auto import tqdm

from imitlib.settings.train import LoopSettings

IGNORE_INDEX = -100
CHECKPOINT_PREFIX = "step-"
TRAINER_STATE = "trainer_state.json"


# ---------------------------------------------------------------------------------------------
# arguments and results
# ---------------------------------------------------------------------------------------------
class TrainArgs(LoopSettings):
    """Hyperparameters of one training run: the ``train`` params of a run (:class:`LoopSettings`, the
    one schema: same fields, defaults and checks) plus the run's seed and replay spread."""

    seed: int = 0                                                   # data order, LoRA init, dropout
    replay_batches: int | None = Field(default=None, ge=0)         # total replay micro-batches (overrides replay_every)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainArgs":
        """Build from a dict; unknown keys are an error naming them."""
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise ValueError(f"unknown TrainArgs keys {unknown}; known: {sorted(cls.model_fields)}")
        return cls(**values)

    @classmethod
    def from_settings(cls, settings: LoopSettings, **run: Any) -> "TrainArgs":
        """The arguments of one run from the ``train`` params (``run``: ``seed``, ``replay_batches``, overrides)."""
        return cls(**{**settings.model_dump(include=set(LoopSettings.model_fields)), **run})


@dataclass
class TrainResult:
    """What a training run did."""

    losses: list[tuple[int, float]]        # (step, mean loss per supervised token) on the training data
    steps: int                             # optimiser steps of the whole run
    tokens_seen: int                       # supervised (loss) tokens of the training data, all steps
    seconds: float                         # wall time of this process's part of the run
    n_examples: int                        # examples used after truncation / dropping
    n_truncated: int                       # examples cut to seq_len
    n_dropped: int                         # examples with no supervised token left (never trained on)
    model: Any = None                      # the trained model (a peft model for LoRA)
    replay_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, replay loss)
    replay_tokens_seen: int = 0            # supervised tokens of replay data
    input_tokens_seen: int = 0             # all non-padding tokens fed (training + replay)
    epochs_run: float = 0.0                # passes over the examples actually made
    min_steps_applied: bool = False        # True when min_steps forced more passes than `epochs`
    resumed_from_step: int = 0             # 0 = fresh start
    n_split: int = 0                       # extra chunks made by long_examples="split"

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no model)."""
        out = dataclasses.asdict(dataclasses.replace(self, model=None))
        out.pop("model")
        return out


# ---------------------------------------------------------------------------------------------
# data: validation, truncation, packing, the step plan
# ---------------------------------------------------------------------------------------------
@dataclass
class PreparedData:
    sequences: list[tuple[list[int], list[int]]]
    n_truncated: int
    n_dropped: int
    n_split: int


def prepare_examples(examples: Sequence[dict], seq_len: int, long_examples: str = "truncate",
                     what: str = "examples") -> PreparedData:
    """Check examples, cut them to ``seq_len`` and drop those left without a supervised token.

    The first token of a sequence is never predicted (labels shift by one), so an example whose only
    supervised token is its first counts as dropped.
    """
    sequences: list[tuple[list[int], list[int]]] = []
    n_truncated = n_dropped = n_split = 0
    for index, example in enumerate(examples):
        if not isinstance(example, dict) or "input_ids" not in example or "labels" not in example:
            raise ValueError(f"{what}[{index}]: expected a dict with 'input_ids' and 'labels'")
        ids, labels = list(example["input_ids"]), list(example["labels"])
        if len(ids) != len(labels):
            raise ValueError(f"{what}[{index}]: input_ids has {len(ids)} tokens but labels has {len(labels)}")
        if not ids:
            n_dropped += 1
            continue
        if len(ids) > seq_len:
            if long_examples == "split":
                chunks = [(ids[i:i + seq_len], labels[i:i + seq_len]) for i in range(0, len(ids), seq_len)]
                n_split += len(chunks) - 1
            else:
                chunks = [(ids[:seq_len], labels[:seq_len])]
                n_truncated += 1
        else:
            chunks = [(ids, labels)]
        for chunk_ids, chunk_labels in chunks:
            if all(label == IGNORE_INDEX for label in chunk_labels[1:]):
                n_dropped += 1
                continue
            sequences.append((chunk_ids, chunk_labels))
    return PreparedData(sequences, n_truncated, n_dropped, n_split)


def _permutation(n: int, seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator).tolist()


def pack_rows(order: Sequence[int], lengths: Sequence[int], seq_len: int, packing: bool) -> list[list[int]]:
    """Group sequence indices into rows of at most ``seq_len`` tokens.

    Best-fit decreasing: the longest sequences are placed first, each into the fullest row that still
    has room, so rows are nearly full (little padding); rows are then ordered by their earliest member
    in ``order`` (a shuffled epoch gives shuffled rows). Without packing every sequence is its own row.
    """
    if not packing:
        return [[i] for i in order]
    position = {i: k for k, i in enumerate(order)}
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(position, key=lambda i: (-lengths[i], position[i])):
        best = -1
        for r, space in enumerate(free):
            if lengths[i] <= space and (best < 0 or space < free[best]):
                best = r
                if space == lengths[i]:
                    break
        if best < 0:
            rows.append([i])
            free.append(seq_len - lengths[i])
        else:
            rows[best].append(i)
            free[best] -= lengths[i]
    rows.sort(key=lambda row: min(position[i] for i in row))
    return rows


def epoch_micro_batches(n_sequences: int, lengths: Sequence[int], args: TrainArgs, seed: int) -> list[list[list[int]]]:
    """Micro-batches (lists of rows of sequence indices) of one shuffled pass."""
    rows = pack_rows(_permutation(n_sequences, seed), lengths, args.seq_len, args.packing)
    return [rows[i:i + args.batch_size] for i in range(0, len(rows), args.batch_size)]


def collate(rows: list[list[int]], sequences: list[tuple[list[int], list[int]]], packing: bool,
            pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Tensors for one micro-batch.

    Packed rows get ``position_ids`` restarting at 0 per sequence and no attention mask (transformers
    then masks attention between packed sequences); the first label of every packed sequence is
    ignored so no token is predicted across a boundary. Padding gets label -100 (and, packed, forms a
    block of its own).
    """
    width = max(sum(len(sequences[i][0]) for i in row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            ids, labs = sequences[i]
            n = len(ids)
            input_ids[r, at:at + n] = torch.tensor(ids)
            labels[r, at:at + n] = torch.tensor(labs)
            labels[r, at] = IGNORE_INDEX
            position_ids[r, at:at + n] = torch.arange(n)
            attention_mask[r, at:at + n] = 1
            at += n
        if at < width:
            position_ids[r, at:] = torch.arange(width - at)
    batch = {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}
    if not packing:
        batch["attention_mask"] = attention_mask
    return batch


def supervised_tokens(rows: list[list[int]], sequences: list[tuple[list[int], list[int]]]) -> int:
    """Tokens that carry loss in a micro-batch (labels after the first of each sequence)."""
    return sum(sum(1 for label in sequences[i][1][1:] if label != IGNORE_INDEX) for row in rows for i in row)


@dataclass
class StepPlan:
    """Which micro-batches every optimiser step uses (identical on every process)."""

    main: list[list[list[list[int]]]]      # step -> micro-batches -> rows -> sequence indices
    replay: list[list[list[list[int]]]]    # step -> replay micro-batches
    epochs_run: float
    min_steps_applied: bool


def make_plan(train: PreparedData, replay: PreparedData | None, args: TrainArgs, world_size: int) -> StepPlan:
    """The whole run's data order, a pure function of the data, the args and the world size."""
    lengths = [len(ids) for ids, _ in train.sequences]
    per_step = args.grad_accum * world_size
    main_steps: list[list] = []
    epochs_run = 0.0
    min_steps_applied = False
    if train.sequences:
        # steps never span two passes: a pass's last step may hold fewer micro-batches
        steps: list[list] = []
        epoch = 0

        def add_pass(fraction: float = 1.0) -> None:
            batches = epoch_micro_batches(len(lengths), lengths, args, seed=args.seed * 100_003 + epoch)
            if fraction < 1.0:
                batches = batches[: max(1, round(len(batches) * fraction))]
            steps.extend(batches[i:i + per_step] for i in range(0, len(batches), per_step))

        while epoch < args.epochs:
            add_pass(min(1.0, args.epochs - epoch))
            epoch += 1
        planned = len(steps) if args.max_steps is None else min(len(steps), args.max_steps)
        n_steps = planned
        if args.min_steps > planned and (args.max_steps is None or args.max_steps > planned):
            min_steps_applied = True
            n_steps = args.min_steps if args.max_steps is None else min(args.min_steps, args.max_steps)
            while len(steps) < n_steps:
                add_pass()
                epoch += 1
        main_steps = steps[:n_steps]
        per_epoch = len(epoch_micro_batches(len(lengths), lengths, args, seed=args.seed * 100_003))
        epochs_run = sum(len(step) for step in main_steps) / per_epoch if per_epoch else 0.0
    replay_steps: list[list] = [[] for _ in main_steps]
    if replay is not None and replay.sequences:
        if not main_steps:
            if args.replay_batches is None:
                raise ValueError("a replay-only run (no examples) needs args.replay_batches")
            n_steps = math.ceil(args.replay_batches / world_size)
            if args.max_steps is not None:
                n_steps = min(n_steps, args.max_steps)
            main_steps = [[] for _ in range(n_steps)]
            replay_steps = [[] for _ in range(n_steps)]
        counts = _replay_counts(len(main_steps), args, world_size)
        stream = _replay_stream(replay, args, sum(counts))
        at = 0
        for step, count in enumerate(counts):
            replay_steps[step] = stream[at:at + count]
            at += count
    elif not main_steps:
        raise ValueError("nothing to train on: every example was dropped (or none was given) and no replay data")
    return StepPlan(main_steps, replay_steps, epochs_run, min_steps_applied)


def _replay_counts(n_steps: int, args: TrainArgs, world_size: int) -> list[int]:
    """Replay micro-batches per step (a multiple of the world size, so every process gets one)."""
    if args.replay_batches is not None:
        per_process = [((s + 1) * args.replay_batches) // max(n_steps, 1) - (s * args.replay_batches) // max(n_steps, 1)
                       for s in range(n_steps)]
        if n_steps and args.replay_batches and not any(per_process):
            per_process[0] = 1
        # spread evenly: a total of replay_batches over the run, rounded up to whole process groups
        return [math.ceil(c / world_size) * world_size for c in per_process]
    return [world_size if s % args.replay_every == 0 else 0 for s in range(n_steps)]


def _replay_stream(replay: PreparedData, args: TrainArgs, n_batches: int) -> list:
    lengths = [len(ids) for ids, _ in replay.sequences]
    stream: list = []
    cycle = 0
    while len(stream) < n_batches:
        stream.extend(epoch_micro_batches(len(lengths), lengths, args, seed=args.seed * 100_003 + 7_919 + cycle * 31))
        cycle += 1
    return stream[:n_batches]


# ---------------------------------------------------------------------------------------------
# model, optimizer, schedule
# ---------------------------------------------------------------------------------------------
def apply_lora(model, args: TrainArgs):
    """Wrap ``model`` with a LoRA adapter (peft); a model that already is a peft model is kept."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if isinstance(model, PeftModel):
        return model
    config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                        target_modules=args.lora_target_modules, task_type="CAUSAL_LM")
    torch.manual_seed(args.seed)
    return get_peft_model(model, config)


def build_optimizer(model, args: TrainArgs) -> torch.optim.Optimizer:
    """AdamW (decay on matrices only) or Adafactor with parameter-scale-relative steps."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    decay = [p for n, p in trainable if p.ndim >= 2]
    no_decay = [p for n, p in trainable if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if args.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(groups, lr=args.lr, scale_parameter=True, relative_step=False, warmup_init=False)
    return torch.optim.AdamW(groups, lr=args.lr, betas=args.adam_betas)


def build_scheduler(optimizer, args: TrainArgs, total_steps: int):
    """Linear warmup, then cosine / linear decay to 0 or a constant rate."""
    from transformers import get_scheduler

    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[args.schedule]
    warmup = min(args.warmup_steps, total_steps)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=max(total_steps, 1))


# ---------------------------------------------------------------------------------------------
# accelerate
# ---------------------------------------------------------------------------------------------
def make_accelerator(args: TrainArgs):
    """An Accelerator for this run; in a single plain process a previous run's state is reset."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState, PartialState

    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1 or "ACCELERATE_MIXED_PRECISION" in os.environ
    if not launched and PartialState._shared_state:
        # A notebook may train many models one after another with different precision settings.
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    # None: follow the launch config (accelerate launch sets ACCELERATE_MIXED_PRECISION), else "no"
    mixed = "bf16" if args.bf16 else None
    try:
        return Accelerator(mixed_precision=mixed)
    except ValueError:
        AcceleratorState._reset_state(reset_partial_state=False)
        return Accelerator(mixed_precision=mixed)


def _fingerprint(train: PreparedData, replay: PreparedData | None, args: TrainArgs, world_size: int) -> str:
    digest = hashlib.sha256()
    relevant = {k: v for k, v in args.to_dict().items() if k not in ("log_every", "checkpoint_every", "keep_checkpoints")}
    digest.update(json.dumps({"args": relevant, "world": world_size}, sort_keys=True, default=str).encode())
    for data in (train, replay):
        if data is None:
            digest.update(b"none")
            continue
        for ids, labels in data.sequences:
            digest.update(json.dumps([ids, labels]).encode())
    return digest.hexdigest()[:16]


def _checkpoints(folder: Path) -> list[Path]:
    if not folder.exists():
        return []
    done = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and (p / TRAINER_STATE).exists()]
    return sorted(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under ``output_dir/checkpoints`` (None when there is none)."""
    found = _checkpoints(Path(output_dir) / "checkpoints")
    return found[-1] if found else None


def _save_checkpoint(accelerator, folder: Path, step: int, state: dict[str, Any], keep: int) -> None:
    target = folder / f"{CHECKPOINT_PREFIX}{step:07d}"
    tmp = folder / f".{target.name}.partial"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        for old in _checkpoints(folder)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
def _token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross entropy over supervised tokens (float32)."""
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


def supports_logits_mask(model) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` (transformers' causal LMs; a boolean
    ``(batch, seq)`` mask there keeps only those positions before the vocabulary projection)."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(inner, "module", inner)  # a DDP wrapper
    try:
        return "logits_to_keep" in inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return False


def _forward_loss_sum(model, batch: dict[str, torch.Tensor], supervised_logits: bool = False) -> torch.Tensor:
    """Summed next-token cross entropy over supervised tokens.

    With ``supervised_logits`` the vocabulary projection runs only at positions whose next token
    is supervised (``logits_to_keep`` as a boolean mask): prompt tokens and padding then cost
    no logits — for a large vocabulary (Gemma: 262k) that is most of a small model's compute. The
    loss is the same sum as with full logits.
    """
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    labels = batch["labels"]
    if not supervised_logits:
        logits = model(**inputs, use_cache=False).logits
        return _token_loss_sum(logits, labels)
    targets = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = targets != IGNORE_INDEX
    logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits  # (kept positions, vocab)
    return F.cross_entropy(logits.float(), targets[targets != IGNORE_INDEX], reduction="sum")


def train_causal_lm(
    model,
    examples: Sequence[dict],
    args: TrainArgs,
    output_dir: str | Path | None = None,
    replay: Sequence[dict] | None = None,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    desc: str = "train",
) -> TrainResult:
    """Train a causal LM in place on tokenized examples.

    Args:
        model: a transformers causal LM (trained in place; for LoRA the returned ``result.model`` is
            the peft model wrapping it).
        examples: ``{"input_ids": [...], "labels": [...]}`` dicts; label -100 means no loss there;
            pretraining passes ``labels == input_ids``.
        args: the hyperparameters.
        output_dir: when given, checkpoints go to ``output_dir/checkpoints`` every
            ``args.checkpoint_every`` steps and at the end, and a rerun resumes from the newest one
            (it must be the same run: same data and args, else an error).
        replay: optional extra examples (e.g. pretraining text) mixed in as extra micro-batches.
        progress: show a progress bar.
        on_step: called with the number of finished steps after every step (and its checkpoint).
        desc: progress bar label.

    Returns:
        A :class:`TrainResult` (losses every ``args.log_every`` steps and at the last step).
    """
    started = time.time()
    train_data = prepare_examples(examples, args.seq_len, args.long_examples, "examples")
    replay_data = prepare_examples(replay, args.seq_len, "split", "replay") if replay else None
    accelerator = make_accelerator(args)
    world_size = accelerator.num_processes
    rank = accelerator.process_index
    plan = make_plan(train_data, replay_data, args, world_size)
    total_steps = len(plan.main)

    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "config"):
            model.config.use_cache = False
    torch.manual_seed(args.seed)
    if args.method == "lora":
        model = apply_lora(model, args)
        if args.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    model.train()
    optimizer = build_optimizer(model, args)
    scheduler = build_scheduler(optimizer, args, total_steps)
    if accelerator.distributed_type.value == "DEEPSPEED" and any(
            len(m[rank::world_size]) + len(r[rank::world_size]) > 1 for m, r in zip(plan.main, plan.replay)):
        raise ValueError("under DeepSpeed the engine steps on every backward: use grad_accum=1 and no replay "
                         "(or the fsdp / ddp configs, where imitlib accumulates gradients itself)")
    supervised_logits = args.supervised_logits and supports_logits_mask(model)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    device = accelerator.device

    fingerprint = _fingerprint(train_data, replay_data, args, world_size)
    state = {"step": 0, "losses": [], "replay_losses": [], "tokens_seen": 0, "replay_tokens_seen": 0,
             "input_tokens_seen": 0, "fingerprint": fingerprint, "total_steps": total_steps}
    checkpoint_dir = Path(output_dir) / "checkpoints" if output_dir is not None else None
    resumed_from = 0
    if checkpoint_dir is not None:
        latest = latest_checkpoint(output_dir)
        if latest is not None:
            saved = json.loads((latest / TRAINER_STATE).read_text())
            if saved.get("fingerprint") != fingerprint:
                raise ValueError(
                    f"{latest}: checkpoint belongs to a different run (data or args changed); "
                    f"remove {checkpoint_dir} to start over")
            accelerator.load_state(str(latest))
            state = saved
            resumed_from = saved["step"]

    def local(batches: list) -> list:
        return batches[rank::world_size]

    bar = tqdm(total=total_steps, initial=state["step"], desc=desc, disable=not (progress and accelerator.is_main_process),
               leave=False, dynamic_ncols=True)
    for step in range(state["step"], total_steps):
        main_batches = plan.main[step]
        replay_batches = plan.replay[step]
        main_tokens = sum(supervised_tokens(rows, train_data.sequences) for rows in main_batches)
        replay_tokens = (sum(supervised_tokens(rows, replay_data.sequences) for rows in replay_batches)
                         if replay_batches else 0)
        work = [("main", rows) for rows in local(main_batches)]
        work += [("replay", rows) for rows in local(replay_batches)]
        dummy = not work  # this process has no data in a short last step: keep collectives in step
        if dummy:
            work = [("main", main_batches[0])] if main_batches else [("replay", replay_batches[0])]
        sums = torch.zeros(2, device=device)
        for index, (kind, rows) in enumerate(work):
            sequences = train_data.sequences if kind == "main" else replay_data.sequences
            denominator = main_tokens if kind == "main" else replay_tokens
            batch = {k: v.to(device) for k, v in collate(rows, sequences, args.packing).items()}
            last = index == len(work) - 1
            sync = accelerator.no_sync(model) if (not last and world_size > 1) else _null_context()
            with sync, accelerator.autocast():
                loss_sum = _forward_loss_sum(model, batch, supervised_logits)
            scale = 0.0 if dummy or denominator == 0 else world_size / denominator
            accelerator.backward(loss_sum * scale)
            if not dummy:
                sums[0 if kind == "main" else 1] += loss_sum.detach().float()
                state["input_tokens_seen"] += sum(len(sequences[i][0]) for row in rows for i in row)
        if args.max_grad_norm is not None:
            accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        sums = accelerator.reduce(sums, reduction="sum") if world_size > 1 else sums
        main_loss = float(sums[0]) / main_tokens if main_tokens else float("nan")
        replay_loss = float(sums[1]) / replay_tokens if replay_tokens else float("nan")
        state["step"] = step + 1
        state["tokens_seen"] += main_tokens
        state["replay_tokens_seen"] += replay_tokens
        finished = state["step"]
        if finished % args.log_every == 0 or finished == total_steps or finished == 1:
            if main_tokens:
                state["losses"].append([finished, main_loss])
            if replay_tokens:
                state["replay_losses"].append([finished, replay_loss])
        bar.update(1)
        if progress and accelerator.is_main_process:
            bar.set_postfix(loss=f"{main_loss if main_tokens else replay_loss:.3f}", refresh=False)
        if checkpoint_dir is not None and (
            (args.checkpoint_every and finished % args.checkpoint_every == 0) or finished == total_steps
        ):
            _save_checkpoint(accelerator, checkpoint_dir, finished, state, args.keep_checkpoints)
        if on_step is not None:
            on_step(finished)
    bar.close()
    if world_size > 1:
        state["input_tokens_seen"] = int(accelerator.reduce(
            torch.tensor(state["input_tokens_seen"], device=device), reduction="sum"))
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.eval()
    return TrainResult(
        losses=[tuple(x) for x in state["losses"]],
        steps=state["step"],
        tokens_seen=state["tokens_seen"],
        seconds=time.time() - started,
        n_examples=len(train_data.sequences),
        n_truncated=train_data.n_truncated,
        n_dropped=train_data.n_dropped,
        model=unwrapped,
        replay_losses=[tuple(x) for x in state["replay_losses"]],
        replay_tokens_seen=state["replay_tokens_seen"],
        input_tokens_seen=state["input_tokens_seen"],
        epochs_run=plan.epochs_run,
        min_steps_applied=plan.min_steps_applied,
        resumed_from_step=resumed_from,
        n_split=train_data.n_split,
    )


class _null_context:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def evaluate_loss(model, examples: Sequence[dict], seq_len: int, batch_size: int = 16, packing: bool = False) -> float:
    """Mean loss per supervised token of ``examples`` (no training; for checks and curves)."""
    data = prepare_examples(examples, seq_len)
    lengths = [len(ids) for ids, _ in data.sequences]
    rows = pack_rows(range(len(lengths)), lengths, seq_len, packing)
    device = next(model.parameters()).device
    total = torch.zeros((), dtype=torch.float64)
    tokens = 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collate(chunk, data.sequences, packing).items()}
            total += _forward_loss_sum(model, batch).double().cpu()
            tokens += supervised_tokens(chunk, data.sequences)
    model.train(was_training)
    return float(total / max(tokens, 1))
