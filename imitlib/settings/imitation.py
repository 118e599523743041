"""Params section `imitation`: its schema. Every field has a default and a one-line comment in params/base.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from imitlib.settings.base import Section


class ImitationSettings(Section):
    """The teacher's API, prompt suites, importers and token budgets."""

    token_budgets: list[int] = Field(default_factory=lambda: [1000], min_length=1)

    @field_validator("token_budgets")
    @classmethod
    def _budgets_positive_sorted(cls, budgets: list[int]) -> list[int]:
        if any(b <= 0 for b in budgets):
            raise ValueError(f"token budgets must be positive, got {budgets}")
        return sorted(budgets)
