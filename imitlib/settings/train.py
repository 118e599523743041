"""Params section `train`: its schema. Every field has a default and a one-line comment in params/base.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from imitlib.settings.base import Section


class TrainSettings(Section):
    """The imitation finetuning sweep."""

    method: Literal["full", "lora"] = "full"
