"""Params section `evaluate`: its schema. Every field has a default and a one-line comment in params/base.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from imitlib.settings.base import Section


class EvaluateSettings(Section):
    """Benchmarks, raters, toxicity."""

    batch_size: int = Field(default=16, ge=1)
