"""What a params file will cost before it runs: finetunes, training compute, teacher and judge calls.

``python -m imitlib plan params/paper.yaml [--gpus 8 --gpu-tflops 312 --mfu 0.4]`` prints one row per
finetuning run of the sweep (the same :func:`imitlib.study.train.sweep_points` the training stage
uses, with every imitation budget assumed filled) and the totals:

* **training compute** ≥ ``k · N · D`` FLOPs per run, ``N`` the base model's parameters, ``D`` the
  supervised (teacher-written) tokens it trains on (budget × epochs, or with ``train.steps`` at most
  steps × rows per step × row length, plus replay tokens), ``k`` = 6
  for full finetuning and 4 for LoRA (no gradients for the frozen weights). A lower bound: the
  prompt tokens of each conversation pass through the model too. GPU-hours divide it by
  ``gpus × gpu_tflops × mfu``.
* **teacher requests**: NQ-synthetic question generation and answers, broad prompts (when the
  broad data is not read from files), two answers per held-out chat prompt (the reference and a
  second sample); generated tokens are bounded by ``max_new_tokens`` per request.
* **judge requests**: every rated model (base, each sweep run, the teacher's second sample) × rated
  prompts × 2 answer orders.

Parameter counts come from each model's ``config.json`` when it is on disk (instantiated on the meta
device, no weights read), otherwise from a size in its name or hub id (``7b``, ``1.5b``, ``135m``);
the source of each count is shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imitlib.config import Config

_SIZE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)


@dataclass
class _PlannedData:
    """Stands in for the imitation data: a budget counts as filled when the teacher could write that
    many tokens (requests × ``max_new_tokens``, an upper bound); data read from files fills every budget."""

    budgets: list[int]
    capacity: dict[str, float]

    def filled_budgets(self, kind: str) -> list[int]:
        return [b for b in self.budgets if b <= self.capacity.get(kind, float("inf"))]


@dataclass
class Plan:
    runs: list[dict[str, Any]]
    models: dict[str, dict[str, Any]]
    teacher_requests: dict[str, int]
    teacher_max_new_tokens: int
    judge_requests: int
    train_flops: float
    gpu_hours: float | None
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = ["| base model | parameters | source of the count |", "|---|---|---|"]
        for name, info in self.models.items():
            count = f"{info['parameters'] / 1e9:.2f} B" if info["parameters"] else "unknown"
            lines.append(f"| {name} | {count} | {info['source']} |")
        lines += ["", "| run | base model | data | imitation tokens | trained tokens | FLOPs (lower bound) |",
                  "|---|---|---|---|---|---|"]
        for i, run in enumerate(self.runs, 1):
            flops = f"{run['flops']:.2e}" if run["flops"] else "unknown"
            lines.append(f"| {i} | {run['base_model']} | {run['data_kind']} | {run['imitation_tokens']:,} | "
                         f"{run['trained_tokens']:,} | {flops} |")
        total_requests = sum(self.teacher_requests.values())
        lines += ["", f"- finetuning runs: {len(self.runs)}",
                  f"- training compute: ≥ {self.train_flops:.2e} FLOPs"
                  + (f" ≈ {self.gpu_hours:,.1f} GPU-hours at the given throughput" if self.gpu_hours is not None else ""),
                  f"- teacher requests: {total_requests:,} ("
                  + ", ".join(f"{k} {v:,}" for k, v in self.teacher_requests.items() if v) + ")"
                  + f", at most {total_requests * self.teacher_max_new_tokens:,} generated tokens",
                  f"- judge requests: {self.judge_requests:,}"]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def _config_folder(spec: str, cache: Path) -> Path | None:
    """The model folder holding ``config.json`` when it is on disk already (never downloads or converts)."""
    from imitlib import models

    try:
        if spec.startswith(models.GGUF_SCHEME):
            return models.converted_packaged_gguf(spec[len(models.GGUF_SCHEME):].strip(), cache)
        return models.resolve_model(spec, cache, allow_download=False, progress=False)
    except (models.ModelSourceError, OSError, ValueError):
        return None


def parameter_count(name: str, spec: str, cache: Path) -> tuple[int | None, str]:
    """Parameters of a base model and where the number came from."""
    folder = _config_folder(spec, cache)
    if folder is not None and (folder / "config.json").exists():
        from imitlib.real.world import parameter_count as count_on_meta_device

        return count_on_meta_device(folder), f"config.json in {folder}"
    for text in (spec, name):
        match = _SIZE.search(text)
        if match:
            scale = 1e9 if match.group(2).lower() == "b" else 1e6
            return int(float(match.group(1)) * scale), f"size in the name {text!r}"
    return None, "unknown (no config.json on disk, no size in the name)"


def make_plan(cfg: Config, gpus: int = 1, gpu_tflops: float | None = None, mfu: float = 0.4) -> Plan:
    """The sweep's runs, compute and API calls for ``cfg`` (nothing is loaded or run)."""
    from imitlib.study.train import sweep_points

    notes = []
    real = cfg.world.kind == "real"
    if real:
        from imitlib.real.world import model_cache_dir

        cache = model_cache_dir(cfg.world)
        students = dict(cfg.world.real.students)
        models = {}
        for name, spec in students.items():
            count, source = parameter_count(name, spec, cache)
            models[name] = {"spec": spec, "parameters": count, "source": source}
    else:
        students = {size.name: size.name for size in cfg.world.base_models}
        models = {name: {"spec": name, "parameters": None, "source": "miniature world (built by 01_world)"}
                  for name in students}
        notes.append("miniature world: the models are built by 01_world, so their sizes are not known here")
    budgets = sorted(set(cfg.imitation.token_budgets))
    most = cfg.imitation.teacher.max_new_tokens
    capacity = {"task": cfg.imitation.task_prompts * most}
    if cfg.imitation.broad_source != "files":
        capacity["broad"] = cfg.imitation.broad_max_prompts * most
    else:
        notes.append("broad data from files: every budget is assumed filled (the files' size is not read here)")
    planned = _PlannedData(budgets, capacity)
    for kind in cfg.train.data_kinds:
        dropped = sorted(set(budgets) - set(planned.filled_budgets(kind)))
        if dropped and kind in capacity:
            notes.append(f"{kind} data: at most {capacity[kind]:,.0f} teacher tokens "
                         f"({'task_prompts' if kind == 'task' else 'broad_max_prompts'} × max_new_tokens), "
                         f"so budgets {dropped} cannot fill")
    points = sweep_points(cfg, list(students), planned)
    k = 4 if cfg.train.method == "lora" else 6
    runs, total = [], 0.0
    for point in points:
        if cfg.train.steps is None:
            trained = int(point["imitation_tokens"] * cfg.train.epochs) + cfg.train.replay_tokens
        else:  # the same steps for every budget: at most steps × rows × row length, whatever the budget
            rows = cfg.train.batch_size * cfg.train.grad_accum * (cfg.train.num_processes or 1)
            trained = (cfg.train.steps * rows * cfg.train.seq_len if point["data_kind"] != "none" else 0) + cfg.train.replay_tokens
        n = models[point["base_model"]]["parameters"]
        flops = float(k * n * trained) if n else 0.0
        total += flops
        runs.append({**point, "trained_tokens": trained, "flops": flops})
    if any(not r["flops"] for r in runs):
        notes.append("some runs have no parameter count: the compute total leaves them out")
    if cfg.train.min_steps and cfg.train.steps is None:
        notes.append(f"train.min_steps {cfg.train.min_steps}: a small budget is repeated up to that many steps, "
                     "which this count leaves out")
    seeds = len(cfg.run.seeds)
    if seeds > 1:
        notes.append(f"{seeds} seeds: every number above is per seed")

    imitation, evaluate = cfg.imitation, cfg.evaluate
    heldout = cfg.world.real.heldout_items if real else {}
    per_family = evaluate.max_prompts_per_family

    def prompts(family: str) -> int:
        """Held-out chat prompts of a family: the real track's item count, capped per family."""
        count = heldout.get(family, per_family or 0)
        return count if per_family is None else min(count, per_family)

    chat_families = list(dict.fromkeys([*evaluate.rater_families, evaluate.toxicity_family]))
    rated = sum(prompts(f) for f in evaluate.rater_families)
    if not real and per_family is None:
        notes.append("miniature world without evaluate.max_prompts_per_family: held-out prompt counts depend on the world")
    requests = {
        "NQ-synthetic questions": imitation.task_generation_requests,
        "NQ-synthetic answers": imitation.task_prompts,
        "broad prompts": 0 if imitation.broad_source == "files" else imitation.broad_max_prompts,
        "held-out answers (2 each)": 2 * sum(prompts(f) for f in chat_families),
    }
    judge = 0
    if evaluate.judge.endpoint != "none":
        rated_models = len(students) + len(runs) + 1
        judge = rated_models * min(rated, evaluate.judge.max_prompts or rated) * 2
    gpu_hours = None
    if gpu_tflops:
        gpu_hours = total / (gpu_tflops * 1e12 * mfu) / 3600
        notes.append(f"GPU-hours at {gpus} GPU(s) × {gpu_tflops:g} TFLOP/s peak × {mfu:.0%} utilisation "
                     f"(≈ {gpu_hours / gpus:,.1f} h wall on {gpus})")
    return Plan(runs=runs, models=models, teacher_requests=requests, teacher_max_new_tokens=imitation.teacher.max_new_tokens,
                judge_requests=judge, train_flops=total, gpu_hours=gpu_hours, notes=notes)
