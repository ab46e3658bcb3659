"""What a process remembers of the stored workflow configuration.

Starting a run files the waiters of its workflow's ``cancel_on``, which the
``workflows`` table holds. Reading it on every start is a statement per run for
an answer that changes only when a deploy syncs the workflows, so the answer is
kept here: refreshed by this process's own ``sync_workflows`` at once, and read
again after ``TTL`` seconds, so a change synced by another process (a deploy
elsewhere) reaches runs started here within that time.
"""

from __future__ import annotations

import time

from ..flow_records import FlowRules

TTL = 10.0
"""Seconds an answer read from the store is used before it is read again."""


class WorkflowConfigs:
    """Each workflow's stored ``cancel_on`` (JSON bytes, or None for no such row) and
    flow rules (None: none)."""

    def __init__(self) -> None:
        self._cancel_on: dict[str, tuple[bytes | None, FlowRules | None, float]] = {}

    def cancel_on(self, workflow: str) -> tuple[bool, bytes | None]:
        """``(known, value)``: whether a fresh answer is kept, and the answer."""
        found = self._cancel_on.get(workflow)
        if found is None or found[2] < time.monotonic():
            return False, None
        return True, found[0]

    def stored(self, workflow: str) -> tuple[bytes | None, FlowRules | None] | None:
        """The workflow's ``cancel_on`` and flow rules, when a fresh answer is kept."""
        found = self._cancel_on.get(workflow)
        if found is None or found[2] < time.monotonic():
            return None
        return found[0], found[1]

    def remember(
        self, workflow: str, cancel_on: bytes | None, flow: FlowRules | None = None
    ) -> None:
        self._cancel_on[workflow] = (cancel_on, flow, time.monotonic() + TTL)

    def forget(self) -> None:
        self._cancel_on.clear()
