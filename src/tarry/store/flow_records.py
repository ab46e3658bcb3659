"""A workflow's flow control as the store keeps and applies it: keyed concurrency
limits, a rate of first starts, a debounce window, a default priority.

The App builds these from the decorator's options (``tarry.flow``); the store
keeps them as JSON on the workflow's row, so that a run created by any process
(an event sent from a process that does not register the workflow) gets its keys,
and the claim of each worker applies the ones its registry holds. Keys are CEL
over the run's trigger, evaluated once when the run is created (``core.flow``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class KeyLimit:
    """At most ``limit`` runs executing at once per value of ``key``."""

    limit: int
    key: str

    @property
    def id(self) -> str:
        """What the run's key row is filed under: the expression, so that a changed
        cap applies to the runs already queued, and a changed key starts afresh."""
        return f"c:{self.key}"


@dataclass(frozen=True, slots=True)
class RateRule:
    """At most ``limit`` first starts per ``per`` seconds per value of ``key`` (None:
    one bucket for the workflow), ``burst`` of them at once."""

    limit: int
    per: float
    key: str | None = None
    burst: int = 1

    @property
    def interval(self) -> float:
        """Seconds between two starts at the steady rate (GCRA's emission interval)."""
        return self.per / self.limit

    @property
    def tolerance(self) -> float:
        """How far ahead of its slot a start may go: room for ``burst`` at once."""
        return (self.burst - 1) * self.interval


@dataclass(frozen=True, slots=True)
class DebounceRule:
    """Starts within ``period`` of the last one for a value of ``key`` become one run,
    with the last one's data, started when ``period`` has passed without another (or
    ``max_wait`` after the first, when given)."""

    period: float
    key: str | None = None
    max_wait: float | None = None


@dataclass(frozen=True, slots=True)
class FlowRules:
    """Everything flow control a workflow has; ``plain`` when it has none."""

    limits: tuple[KeyLimit, ...] = ()
    rate: RateRule | None = None
    debounce: DebounceRule | None = None
    priority: int = 0

    @property
    def plain(self) -> bool:
        return not self.limits and self.rate is None and self.debounce is None and not self.priority

    @property
    def gated(self) -> bool:
        """Whether its claim has more to check than a lease (keys, a rate, a debounce
        key to clear)."""
        return bool(self.limits) or self.rate is not None or self.debounce is not None

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @staticmethod
    def from_json(data: bytes | str) -> FlowRules:
        found: dict[str, Any] = orjson.loads(data)
        rate, debounce = found.get("rate"), found.get("debounce")
        return FlowRules(
            limits=tuple(KeyLimit(**item) for item in found.get("limits", ())),
            rate=None if rate is None else RateRule(**rate),
            debounce=None if debounce is None else DebounceRule(**debounce),
            priority=int(found.get("priority", 0)),
        )


@dataclass(frozen=True, slots=True)
class KeyHold:
    """One of a queued run's keys as it stands: for a concurrency limit, how many runs
    of its value execute now, of how many allowed."""

    rule: str
    """``concurrency``, ``rate`` or ``debounce``."""
    key: str | None
    value: str
    """The key's value as JSON (empty: the rule has no key)."""
    executing: int | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class QueueRow:
    """What holds a queued run back, as the store sees it (``why_queued`` words it)."""

    priority: int
    keys: tuple[KeyHold, ...] = ()
    ahead: int = 0
    """Due runs of a higher priority (counted up to ``AHEAD_COUNTED``), when it is due."""


NO_FLOW = FlowRules()
"""The rules of a workflow without flow control."""
