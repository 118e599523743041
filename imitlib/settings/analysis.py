"""Params section `analysis`: its schema. Every field has a default and a one-line comment in params/base.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from imitlib.settings.base import Section


class ClaimSettings(Section):
    """Thresholds of the scorecard's decision rules (see imitlib.analysis.claims)."""

    c1_min_rate: float = Field(default=0.5, ge=0.0, le=1.0)
    saturation_margin: float = Field(default=0.10, ge=0.0, le=1.0)
    flat_margin: float = Field(default=0.02, ge=0.0, le=1.0)
    c3_min_gain: float = Field(default=0.0, ge=-1.0, le=1.0)
    c4_min_gain: float = Field(default=0.0, ge=-1.0, le=1.0)
    c5_min_style_gap_closed: float = Field(default=0.5, ge=-1.0, le=2.0)
    c6_min_reduction: float = Field(default=0.0, ge=-1.0, le=1.0)


class AnalysisSettings(Section):
    """Tables, figures, claims scorecard."""

    bootstrap_samples: int = Field(default=1000, ge=10)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    bootstrap_seed: int = 0
    factual_task: str = "qa"
    style_tasks: list[str] = Field(default_factory=list)
    preference_column: Literal["pref_style", "pref_fact", "pref_llm"] = "pref_style"
    claims: ClaimSettings = Field(default_factory=ClaimSettings)
