"""Params section `world`: its schema. Every field has a default and a one-line comment in params/base.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from imitlib.settings.base import Section


class ModelSize(Section):
    """One Llama model size built from a config (hidden width, depth, heads, MLP width)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    hidden_size: int = Field(ge=8)
    layers: int = Field(ge=1)
    heads: int = Field(ge=1)
    intermediate_size: int = Field(ge=8)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "ModelSize":
        if self.hidden_size % self.heads:
            raise ValueError(f"model {self.name}: hidden_size {self.hidden_size} is not divisible by heads {self.heads}")
        head = self.hidden_size // self.heads
        if head % 2:
            raise ValueError(f"model {self.name}: hidden_size {self.hidden_size} / heads {self.heads} = {head} per head; "
                             f"rotary position embeddings need an even head size")
        return self


class BaseSize(ModelSize):
    """A base model's size and its own peak pretraining learning rate (null: ``world.pretrain_lr``)."""

    pretrain_lr: float | None = Field(default=None, gt=0.0)


class TaskCounts(Section):
    """Items of the sampled task families in one item set (qa and bio cover every individual).

    ``chitchat`` is never evaluated: it counts only in the imitation pool and the teacher's tuning data.
    """

    mc: int = Field(default=40, ge=1)
    compare: int = Field(default=40, ge=1)
    skill: int = Field(default=40, ge=1)
    provoke: int = Field(default=20, ge=1)
    chitchat: int = Field(default=0, ge=0)


def _pool_counts() -> TaskCounts:
    return TaskCounts(mc=200, compare=200, skill=200, provoke=60, chitchat=200)


def _tuning_counts() -> TaskCounts:
    return TaskCounts(mc=60, compare=60, skill=60, provoke=20, chitchat=60)


def _teacher_size() -> ModelSize:
    return ModelSize(name="teacher", hidden_size=112, layers=4, heads=4, intermediate_size=336)


DEFAULT_REAL_SOURCES = {"qa": "fanoutqa", "mc": "mmlu-dev", "code": "humaneval", "open": "fanoutqa-open"}


class RealSettings(Section):
    """Real tracks (``kind: real``): resolved pretrained LMs and task items from packages or files.

    ``sources`` empty means the packaged defaults (``DEFAULT_REAL_SOURCES``).
    """

    teacher: str | None = None
    students: dict[str, str] = Field(default_factory=dict)
    model_cache: str | None = None
    allow_download: bool = False
    sources: dict[str, str] = Field(default_factory=dict)
    heldout_items: dict[str, int] = Field(default_factory=dict)
    imitation_items: dict[str, int] = Field(default_factory=dict)
    calibrate: bool = False
    min_teacher_gap: float = Field(default=0.20, ge=0.0, le=1.0)
    min_gap_families: int = Field(default=2, ge=1)

    @field_validator("students")
    @classmethod
    def _student_names(cls, students: dict[str, str]) -> dict[str, str]:
        import re

        bad = [name for name in students if name == "teacher" or not re.fullmatch(r"[A-Za-z0-9_.-]+", name)]
        if bad:
            raise ValueError(f"student names must be plain folder names other than 'teacher', got {bad}")
        return students

    @field_validator("sources")
    @classmethod
    def _known_families(cls, sources: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(sources) - {"qa", "mc", "code", "open"})
        if unknown:
            raise ValueError(f"unknown real-track task families {unknown}; expected qa, mc, code, open")
        if sources and "qa" not in sources:
            raise ValueError("sources needs a 'qa' family (the NQ analog; it seeds the task-specific imitation data)")
        return sources

    @field_validator("heldout_items", "imitation_items")
    @classmethod
    def _non_negative(cls, counts: dict[str, int]) -> dict[str, int]:
        bad = {family: n for family, n in counts.items() if n < 0}
        if bad:
            raise ValueError(f"item counts must be >= 0, got {bad}")
        return counts


def _default_sizes() -> list[BaseSize]:
    # pretrain_lr: each size's lowest held-out loss among 3e-3 / 6e-3 / 1.2e-2 / 2.4e-2 on design seeds 3-4
    return [BaseSize(name="base-xs", hidden_size=32, layers=2, heads=2, intermediate_size=96, pretrain_lr=1.2e-2),
            BaseSize(name="base-s", hidden_size=48, layers=2, heads=2, intermediate_size=128, pretrain_lr=6e-3),
            BaseSize(name="base-m", hidden_size=64, layers=3, heads=2, intermediate_size=192, pretrain_lr=6e-3)]


class WorldSettings(Section):
    """The offline miniature world (knowledge base, corpus, base LMs, teacher)."""

    kind: Literal["miniature", "real"] = "miniature"
    n_individuals: int = Field(default=24, ge=4)
    values_per_attribute: int = Field(default=30, ge=4, le=30)
    heldout_fraction: float = Field(default=0.5, gt=0.0, lt=1.0)
    popularity_exponent: float = Field(default=0.5, ge=0.0)
    bio_share: float = Field(default=0.72, ge=0.0, le=1.0)
    qa_share: float = Field(default=0.15, ge=0.0, le=1.0)
    rude_share: float = Field(default=0.03, ge=0.0, le=1.0)
    qa_individual_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    # pretraining-only question wordings per attribute in the corpus's Q/A lines, on top of the tuning and
    # pool pairs (imitlib.world.corpus.PRETRAIN_ONLY_QUESTION_TEMPLATES); 0 is world v3
    pretrain_qa_extra_paraphrases: int = Field(default=0, ge=0, le=4)
    base_models: list[BaseSize] = Field(default_factory=_default_sizes, min_length=1)
    seq_len: int = Field(default=128, ge=16)
    pretrain_tokens: int = Field(default=800_000, ge=1000)
    pretrain_lr: float = Field(default=3e-3, gt=0.0)
    pretrain_batch_size: int = Field(default=8, ge=1)
    warmup_steps: int = Field(default=10, ge=0)
    teacher_model: ModelSize = Field(default_factory=_teacher_size)
    teacher_extra_tokens: int = Field(default=300_000, ge=0)
    teacher_pretrain_lr: float = Field(default=2e-3, gt=0.0)
    teacher_tuning_fraction: float = Field(default=1.0, gt=0.0, le=1.0)
    teacher_chat_lr: float = Field(default=2e-3, gt=0.0)
    teacher_chat_epochs: float = Field(default=10.0, gt=0.0)
    teacher_chat_batch_size: int = Field(default=4, ge=1)
    teacher_qa_paraphrases: int = Field(default=2, ge=1, le=2)
    # more non-evaluation wordings per fact in the teacher's tuning (PRETRAIN_ONLY_QUESTION_TEMPLATES); 0 = worlds v2-v6
    teacher_qa_extra_paraphrases: int = Field(default=0, ge=0, le=4)
    # share of the teacher's qa tuning answers given as a list (the other families' rates: imitlib.world.style.LIST_RATES)
    teacher_qa_list_rate: float = Field(default=0.25, ge=0.0, le=1.0)
    teacher_replay_every: int = Field(default=1, ge=0)
    task_counts: TaskCounts = Field(default_factory=TaskCounts)
    pool_counts: TaskCounts = Field(default_factory=_pool_counts)
    teacher_task_counts: TaskCounts = Field(default_factory=_tuning_counts)
    recall_shots: int = Field(default=3, ge=0)
    convergence_replay_tokens: int = Field(default=100_000, ge=0)
    convergence_lr: float = Field(default=1e-3, gt=0.0)
    convergence_replicates: int = Field(default=3, ge=1)
    convergence_max_gain: float = Field(default=5.0, ge=0.0)
    convergence_max_rounds: int = Field(default=2, ge=0)
    # which recall decides that a base is converged: "pool" (worlds v3-v4: the replay gain through the pool's
    # wordings of the evaluation facts, seen in pretraining) or "evaluation" (world v5: the gains through
    # the pool's and through the evaluation's own wordings, both at most convergence_max_gain)
    convergence_wordings: Literal["pool", "evaluation"] = "evaluation"
    second_sample_temperature: float = Field(default=0.7, gt=0.0, le=2.0)
    calibration_items_per_family: int = Field(default=20, ge=1)
    sample_chats: int = Field(default=4, ge=0)
    time_budget_seconds: float = Field(default=360.0, gt=0.0)
    real: RealSettings = Field(default_factory=RealSettings)

    @field_validator("base_models")
    @classmethod
    def _unique_names(cls, sizes: list[ModelSize]) -> list[ModelSize]:
        names = [s.name for s in sizes]
        if len(set(names)) != len(names) or "teacher" in names:
            raise ValueError(f"base model names must be distinct and not 'teacher', got {names}")
        return sizes

    @model_validator(mode="after")
    def _real_has_students(self) -> "WorldSettings":
        if self.kind == "real" and not self.real.students:
            raise ValueError("world.kind is 'real' but world.real.students is empty: name at least one base LM")
        return self

    @model_validator(mode="after")
    def _shares_fit(self) -> "WorldSettings":
        total = self.bio_share + self.qa_share + self.rude_share
        if total > 1.0 + 1e-9:
            raise ValueError(f"bio_share + qa_share + rude_share = {total:.3f} exceeds 1 (the rest is filler)")
        return self
