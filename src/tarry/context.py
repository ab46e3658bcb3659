"""What a handler knows about the run it executes."""

from __future__ import annotations

from typing import Any

from .models import Event


class Context:
    """``ctx`` in ``handler(ctx, step)``.

    ``attempt`` is the attempt number (from 1) of the ``step.run`` now executing.
    """

    __slots__ = ("attempt", "event", "payload", "run_id", "workflow")

    def __init__(self, run_id: str, workflow: str, payload: Any, event: Event | None) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.payload = payload
        self.event = event
        self.attempt = 1

    def __repr__(self) -> str:
        return f"Context(run_id={self.run_id!r}, workflow={self.workflow!r})"
