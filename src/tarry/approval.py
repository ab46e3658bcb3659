"""``tarry.Approval``: the approval shape, a person's yes or no with their name.

A wait declared with ``schema=tarry.Approval`` is one a dashboard may answer with
Approve/Reject buttons (``wait_schema.is_approval`` recognises its JSON Schema).
This module imports pydantic, which comes with the ``server`` extra; ``tarry``
imports it only when ``tarry.Approval`` is first used.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Approval(BaseModel):
    """A decision on something a run waits for: approved or not, by whom, and why."""

    model_config = ConfigDict(frozen=True)

    approved: bool
    by: str
    comment: str | None = None
