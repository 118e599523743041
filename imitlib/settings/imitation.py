"""Params section `imitation`: its schema. Every field has a default and a one-line comment in params/base.yaml."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from imitlib.settings.base import Section

IMPORT_FORMATS = ("sharegpt", "alpaca", "hc3", "messages", "discord")


class TeacherSettings(Section):
    """How the teacher is reached and how it samples."""

    backend: Literal["served", "local", "openai"] = "served"
    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(default=4, ge=1, le=256)
    max_retries: int = Field(default=5, ge=0, le=50)
    backoff_s: float = Field(default=0.5, ge=0.0)
    timeout_s: float = Field(default=120.0, gt=0.0)
    max_new_tokens: int = Field(default=96, ge=1)
    # the cap of imitation answers to code prompts (a solution restates its docstring before the body); None: max_new_tokens
    code_max_new_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    batch_size: int = Field(default=16, ge=1)
    server_max_batch: int = Field(default=16, ge=1)
    dtype: Literal["float32", "bfloat16"] = "float32"

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(
                "api_key_env must be the NAME of an environment variable (e.g. OPENAI_API_KEY), not a key"
                " (the value given is not repeated here); never put the key itself in params"
            )
        return name

    @model_validator(mode="after")
    def _openai_needs_endpoint(self) -> "TeacherSettings":
        if self.backend == "openai" and (not self.base_url or not self.model):
            raise ValueError("backend 'openai' needs base_url and model")
        return self


class ImportFile(Section):
    """One user-supplied conversation file."""

    format: Literal["sharegpt", "alpaca", "hc3", "messages", "discord"]
    path: str


class CleaningSettings(Section):
    """How imported files are cleaned (imitlib/data/cleaning.py): FastChat's ShareGPT cleaning."""

    strict: bool = False
    html_to_markdown: bool = True
    dedup: Literal["first_turn", "conversation", "none"] = "first_turn"
    languages: list[str] = Field(default_factory=lambda: ["en"])
    block_tokens: int | None = Field(default=None, ge=16)

    @field_validator("languages")
    @classmethod
    def _iso_codes(cls, languages: list[str]) -> list[str]:
        bad = [code for code in languages if not re.fullmatch(r"[a-z]{2,3}", code)]
        if bad:
            raise ValueError(f"languages are lower-case ISO 639-1 codes such as 'en', got {bad}")
        if len(set(languages)) != len(languages):
            raise ValueError(f"languages repeat a code: {languages}")
        return languages


class ImitationSettings(Section):
    """The teacher's API, prompt suites, importers and token budgets."""

    teacher: TeacherSettings = Field(default_factory=TeacherSettings)
    broad_source: Literal["world", "files"] = "world"
    import_files: list[ImportFile] = Field(default_factory=list)
    cleaning: CleaningSettings = Field(default_factory=CleaningSettings)
    broad_max_prompts: int = Field(default=2000, ge=1)
    task_prompts: int = Field(default=300, ge=1)
    task_families: list[Literal["qa", "code"]] = Field(default_factory=lambda: ["qa"], min_length=1)
    task_seed_pairs: int = Field(default=10, ge=1)
    task_pairs_shown: int = Field(default=5, ge=1)
    task_generation_requests: int = Field(default=60, ge=0)
    task_generation_temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    second_answer_temperature: float = Field(default=0.7, gt=0.0, le=2.0)
    diversity_sample: int = Field(default=300, ge=2)
    token_budgets: list[int] = Field(default_factory=lambda: [1000], min_length=1)

    @field_validator("token_budgets")
    @classmethod
    def _budgets_positive_sorted(cls, budgets: list[int]) -> list[int]:
        if any(b <= 0 for b in budgets):
            raise ValueError(f"token budgets must be positive, got {budgets}")
        if len(set(budgets)) != len(budgets):
            raise ValueError(f"token budgets must be distinct, got {budgets}")
        return sorted(budgets)

    @model_validator(mode="after")
    def _consistent(self) -> "ImitationSettings":
        if "qa" not in self.task_families or len(set(self.task_families)) != len(self.task_families):
            raise ValueError(f"task_families must include qa (the NQ-synthetic suite) once, got {self.task_families}")
        if self.task_pairs_shown > self.task_seed_pairs:
            raise ValueError(
                f"task_pairs_shown ({self.task_pairs_shown}) exceeds task_seed_pairs ({self.task_seed_pairs})"
            )
        if self.broad_source == "files" and not self.import_files:
            raise ValueError("broad_source 'files' needs at least one entry in import_files")
        return self
