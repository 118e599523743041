"""Params section `evaluate`: its schema. Every field has a default and a one-line comment in params/base.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from imitlib.settings.base import Section

WORLD_BENCHMARKS = ("qa", "mc", "compare", "code")


# lm-eval's VLLM model_args that imitlib fills in per model and run (imitlib.evaluate.benchmarks.model_args_for)
VLLM_ARGS_SET_BY_IMITLIB = ("pretrained", "tokenizer", "lora_local_path", "batch_size", "seed", "device")


class BenchmarkSettings(Section):
    """The world's task families run through lm-eval, and lm-eval's own tasks (paper scale)."""

    families: list[Literal["qa", "mc", "compare", "code"]] = Field(default_factory=lambda: ["qa", "mc"])
    qa_fewshot: int = Field(default=3, ge=0)
    mc_fewshot: int = Field(default=5, ge=0)
    # cloze: each option scored as the continuation of the bare question (what a model stored);
    # letters: MMLU's standard lm-eval format (options listed, the letter scored), what instruct models are rated on
    mc_format: Literal["cloze", "letters"] = "cloze"
    compare_fewshot: int = Field(default=3, ge=0)
    max_gen_toks: int = Field(default=16, ge=1)
    limit: int | None = Field(default=None, ge=1)
    fewshot_seed: int = 1234
    builtin_tasks: dict[str, int] = Field(default_factory=dict)
    code_max_gen_toks: int = Field(default=256, ge=1)
    code_timeout_s: float = Field(default=10.0, gt=0)
    code_memory_mb: int = Field(default=512, ge=64)
    backend: Literal["hf", "vllm"] = "hf"
    vllm_args: dict[str, int | float | bool | str] = Field(default_factory=dict)

    @field_validator("vllm_args")
    @classmethod
    def _vllm_args_not_set_by_imitlib(cls, args: dict) -> dict:
        taken = sorted(set(args) & set(VLLM_ARGS_SET_BY_IMITLIB))
        if taken:
            raise ValueError(f"vllm_args {taken} are set by imitlib for each model (pretrained, tokenizer, adapter, "
                             "batch size, seed come from the run); leave them out")
        return args

    @field_validator("builtin_tasks")
    @classmethod
    def _fewshot_non_negative(cls, tasks: dict[str, int]) -> dict[str, int]:
        bad = {name: shots for name, shots in tasks.items() if shots < 0}
        if bad:
            raise ValueError(f"few-shot counts must be >= 0, got {bad}")
        return tasks


CROWD_FEATURES = ("structure", "length", "confidence", "fluency", "on_topic")


class RaterSettings(Section):
    """The rater panel: the crowd-rater stand-in (fixed features and weights), the fact rater, fact weights."""

    crowd_features: dict[str, float] = Field(default_factory=lambda: {name: 1.0 for name in CROWD_FEATURES})
    length_words: int = Field(default=60, ge=1)
    tie_margin: float = Field(default=0.05, ge=0, lt=0.5)
    fact_weights: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0], min_length=1)
    crowd_fact_weight: float = Field(default=0.25, ge=0, le=1)

    @field_validator("crowd_features")
    @classmethod
    def _known_features(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(CROWD_FEATURES))
        if unknown:
            raise ValueError(f"unknown crowd-rater features {unknown}; expected some of {list(CROWD_FEATURES)}")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"crowd-rater feature weights must be >= 0 with a positive sum, got {weights}")
        return weights

    @field_validator("fact_weights")
    @classmethod
    def _weights_in_unit_interval(cls, weights: list[float]) -> list[float]:
        bad = [w for w in weights if not 0.0 <= w <= 1.0]
        if bad:
            raise ValueError(f"fact weights must lie in [0, 1], got {bad}")
        names = [f"pref_w{round(w * 100):03d}" for w in weights]
        if len(set(names)) != len(names):
            raise ValueError(f"fact weights {weights} give duplicate columns {names}")
        return weights


class JudgeSettings(Section):
    """The LLM judge behind an OpenAI-compatible endpoint."""

    endpoint: Literal["none", "teacher", "url"] = "none"
    base_url: str | None = None
    model: str = "teacher"
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=8, ge=1)
    max_prompts: int | None = Field(default=None, ge=1)
    max_unparsed_share: float = Field(default=0.5, ge=0, le=1)
    min_consistency: float = Field(default=0.5, ge=0, le=1)


class EvaluateSettings(Section):
    """Benchmarks, raters, toxicity."""

    batch_size: int = Field(default=16, ge=1)
    teacher_dtype: Literal["float32", "bfloat16"] = "float32"
    benchmarks: BenchmarkSettings = Field(default_factory=BenchmarkSettings)
    rater_families: list[str] = Field(default_factory=lambda: ["qa", "bio", "compare", "skill"], min_length=1)
    toxicity_family: str = "provoke"
    max_prompts_per_family: int | None = Field(default=None, ge=1)
    max_new_tokens: int = Field(default=64, ge=1)
    raters: RaterSettings = Field(default_factory=RaterSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    human_sample: int = Field(default=40, ge=1)
    human_ratings: list[str] = Field(default_factory=list)
