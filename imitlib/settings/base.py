"""The base of every params section (kept apart so section modules import nothing else)."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every params section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
