"""What the store counts for ``/metrics`` at each scrape (``Store.run_counts``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ParkedGroup:
    """The parked runs of one workflow on one kind of wait."""

    workflow: str
    kind: str
    """What ``waiting_for`` names: signal, event, message, sleep, any, all, invoke,
    or branches (a run parked on the waits of several branches at once)."""
    count: int
    oldest: float
    """When the run parked longest ago parked (epoch seconds)."""


@dataclass(frozen=True, slots=True)
class RunCounts:
    open: dict[tuple[str, str], int]
    """Queued and running runs, by ``(workflow, status)``; parked runs are ``parked``."""
    parked: list[ParkedGroup]
    now: float
    """The store's clock at the read, for the age of the oldest waits."""
