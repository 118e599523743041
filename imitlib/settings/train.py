"""Params section `train`: its schema. Every field has a default and a one-line comment in params/base.yaml.

:class:`LoopSettings` are the arguments of one training run (``imitlib.train.loop.TrainArgs`` is
derived from them: the loop, world pretraining and the sweep share these fields and defaults);
:class:`TrainSettings` adds what the sweep decides (which runs, replay, launch).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from imitlib.settings.base import Section


class LoopSettings(Section):
    """How one training run trains."""

    method: Literal["full", "lora"] = "full"
    optimizer: Literal["adamw", "adafactor"] = "adamw"
    lr: float = Field(default=1e-3, gt=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(default=10, ge=0)
    epochs: float = Field(default=3, gt=0)
    min_steps: int = Field(default=0, ge=0)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=16, ge=1)
    seq_len: int = Field(default=128, ge=8)
    grad_accum: int = Field(default=1, ge=1)
    weight_decay: float = Field(default=0.0, ge=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    packing: bool = True
    long_examples: Literal["truncate", "split"] = "truncate"
    replay_every: int = Field(default=1, ge=1)
    lora_r: int = Field(default=8, ge=1)
    lora_alpha: int = Field(default=16, ge=1)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    lora_target_modules: str | list[str] = "all-linear"
    bf16: bool = False
    gradient_checkpointing: bool = False
    supervised_logits: bool = True
    checkpoint_every: int = Field(default=50, ge=0)
    keep_checkpoints: int = Field(default=2, ge=1)
    log_every: int = Field(default=5, ge=1)


class TrainSettings(LoopSettings):
    """The imitation finetuning sweep: the arguments of every run, and which runs."""

    steps: int | None = Field(default=None, ge=1)
    replay_tokens: int = Field(default=0, ge=0)
    replay_control: bool = True
    base_models: list[str] = Field(default_factory=list)
    data_kinds: list[Literal["broad", "task"]] = Field(default_factory=lambda: ["broad", "task"], min_length=1)
    token_budgets: list[int] = Field(default_factory=list)
    curve_base_models: list[str] = Field(default_factory=list)
    curve_data_kinds: list[Literal["broad", "task"]] = Field(default_factory=list)
    accelerate_config: Literal["cpu", "single_gpu", "ddp", "fsdp", "deepspeed_zero3"] | None = None
    num_processes: int | None = Field(default=None, ge=1)
    max_mismatch_fraction: float = Field(default=0.0, ge=0, le=1)

    @field_validator("token_budgets")
    @classmethod
    def _budgets_positive(cls, budgets: list[int]) -> list[int]:
        if any(b <= 0 for b in budgets):
            raise ValueError(f"token budgets must be positive, got {budgets}")
        return sorted(set(budgets))
