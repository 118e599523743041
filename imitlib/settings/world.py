"""Params section `world`: its schema. Every field has a default and a one-line comment in params/base.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from imitlib.settings.base import Section


class WorldSettings(Section):
    """The offline miniature world (knowledge base, corpus, base LMs, teacher)."""

    kind: Literal["miniature", "real"] = "miniature"
    n_individuals: int = Field(default=100, ge=4)
