"""Params section `analysis`: its schema. Every field has a default and a one-line comment in params/base.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from imitlib.settings.base import Section

# Every claim of the scorecard: its statistic (an identifier a pre-registration names) and the side
# of the threshold the claim asserts. The statistics themselves are computed in imitlib.analysis.claims.
CLAIM_STATISTICS: dict[str, tuple[str, Literal["above", "below"]]] = {
    "C1": ("good_or_better_share", "above"),
    "C1w": ("good_or_better_share_at_crowd_weight", "above"),
    "C1w1": ("good_or_better_share_at_weight_1", "below"),
    "C1b": ("good_or_better_share_change", "below"),
    "C1g": ("good_or_better_share_gain_over_base", "above"),
    "C2": ("broad_minus_base_accuracy", "below"),
    "C2u": ("broad_minus_base_accuracy_unexposed", "below"),
    "C2c": ("broad_minus_control_accuracy", "below"),
    "C3": ("largest_minus_smallest_base_accuracy", "above"),
    "C4": ("task_minus_base_factual_accuracy", "above"),
    "C4c": ("task_minus_control_factual_accuracy", "above"),
    "C4k": ("task_minus_base_code_pass_at_1", "above"),
    "C5": ("style_minus_gap_target", "above"),
    "C6": ("toxicity_reduction", "above"),
    "C7": ("exposed_minus_base_accuracy", "above"),
}


class ClaimSettings(Section):
    """Thresholds of the scorecard's decision rules (see imitlib.analysis.claims)."""

    c1_min_rate: float = Field(default=0.5, ge=0.0, le=1.0)
    saturation_margin: float = Field(default=0.10, ge=0.0, le=1.0)
    c1g_min_gain: float = Field(default=0.0, ge=-1.0, le=1.0)
    flat_margin: float = Field(default=0.02, ge=0.0, le=1.0)
    c3_min_gain: float = Field(default=0.0, ge=-1.0, le=1.0)
    c4_min_gain: float = Field(default=0.0, ge=-1.0, le=1.0)
    c5_min_style_gap_closed: float = Field(default=0.5, ge=-1.0, le=2.0)
    c6_min_reduction: float = Field(default=0.0, ge=-1.0, le=1.0)
    c7_min_gain: float = Field(default=0.0, ge=-1.0, le=1.0)


class PrimaryClaim(Section):
    """One pre-registered primary claim: which claim, its statistic, threshold and direction."""

    claim: str
    statistic: str
    threshold: float
    direction: Literal["above", "below"]

    @field_validator("claim")
    @classmethod
    def _known_claim(cls, claim: str) -> str:
        if claim not in CLAIM_STATISTICS:
            raise ValueError(f"unknown claim {claim!r}; choose from {', '.join(CLAIM_STATISTICS)}")
        return claim

    @model_validator(mode="after")
    def _matches_the_claim(self) -> "PrimaryClaim":
        statistic, direction = CLAIM_STATISTICS[self.claim]
        if self.statistic != statistic:
            raise ValueError(f"claim {self.claim}: statistic {self.statistic!r} is not the one the scorecard "
                             f"computes for it ({statistic!r})")
        if self.direction != direction:
            raise ValueError(f"claim {self.claim}: direction {self.direction!r}; the claim asserts {direction!r}")
        return self


def _default_primary() -> list[PrimaryClaim]:
    thresholds = {"C1": 0.5, "C2": 0.02, "C3": 0.0, "C4": 0.0, "C5": 0.0}
    return [PrimaryClaim(claim=c, statistic=CLAIM_STATISTICS[c][0], threshold=t, direction=CLAIM_STATISTICS[c][1])
            for c, t in thresholds.items()]


class AnalysisSettings(Section):
    """Tables, figures, claims scorecard."""

    bootstrap_samples: int = Field(default=1000, ge=10)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    bootstrap_seed: int = 0
    factual_task: str = "qa"
    style_tasks: list[str] = Field(default_factory=list)
    preference_column: Literal["pref_style", "pref_fact", "pref_llm"] = "pref_style"
    seed_interval: Literal["t", "sign_flip"] = "t"
    primary_claims: list[PrimaryClaim] = Field(default_factory=_default_primary)
    claims: ClaimSettings = Field(default_factory=ClaimSettings)

    @field_validator("primary_claims")
    @classmethod
    def _distinct(cls, primary: list[PrimaryClaim]) -> list[PrimaryClaim]:
        names = [p.claim for p in primary]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"claims listed more than once: {', '.join(repeated)}")
        return primary
