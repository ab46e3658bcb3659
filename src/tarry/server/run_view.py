"""A run's page laid out for debugging: its steps and waits on one time axis.

Each step is a row of the waterfall. On it, every failed attempt is a red bar,
the backoff before the next attempt a gap bar, the attempt that stands (or is
under way) a bar in its status's colour, and a wait the time the run was parked.
Positions are percentages of the run's span, from its creation to its end (or
now, while it has not ended), so the page needs no script to draw it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ..models import Run, StepRecord
from .render import span

WAIT_KINDS = frozenset({"sleep", "signal", "event", "message", "any", "all", "invoke"})
"""Step kinds whose time is spent parked, holding nothing."""
SAME = 1e-6
"""Two stored times this close are the same instant."""


@dataclass(frozen=True, slots=True)
class Bar:
    """One stretch of a row: ``kind`` is attempt, failed, backoff or parked."""

    kind: str
    left: float
    width: float
    label: str


@dataclass(frozen=True, slots=True)
class Row:
    step: StepRecord
    bars: list[Bar]
    took: str
    retries: int
    parked: bool


@dataclass(frozen=True, slots=True)
class Waterfall:
    rows: list[Row]
    ticks: list[tuple[float, str]]
    total: str
    ran: str
    parked: str
    retries: int
    notes: list[str] = field(default_factory=list)


def waterfall(run: Run, now: datetime) -> Waterfall:
    start = run.created_at.timestamp()
    end = (run.ended_at or now).timestamp()
    for step in run.steps:
        for t in (step.started_at, step.ended_at):
            if t is not None:
                end = max(end, t.timestamp())
    whole = max(end - start, 1e-3)

    def bar(kind: str, t0: float, t1: float, label: str) -> Bar:
        left = min(max((t0 - start) / whole * 100, 0.0), 100.0)
        width = max(min((t1 - t0) / whole * 100, 100.0 - left), 0.0)
        return Bar(kind, round(left, 3), round(width, 3), label)

    rows = []
    ran = parked = 0.0
    retries = 0
    for step in run.steps:
        bars: list[Bar] = []
        previous_end: float | None = None
        for a in step.failed_attempts:
            if a.started_at is None or a.ended_at is None:
                continue
            t0, t1 = a.started_at.timestamp(), a.ended_at.timestamp()
            if previous_end is not None and t0 > previous_end:
                bars.append(_gap(bar, previous_end, t0))
            message = a.error.get("message", "") if isinstance(a.error, dict) else ""
            kind = a.error.get("type", "error") if isinstance(a.error, dict) else "error"
            label = f"attempt {a.attempt} failed after {span(t1 - t0)}: {kind} {message}"
            bars.append(bar("failed", t0, t1, label.strip()))
            ran += t1 - t0
            previous_end = t1
        retries += max(len(step.failed_attempts) - (1 if step.status == "failed" else 0), 0)
        own = _own_bar(step, previous_end, now.timestamp(), run.ended)
        if own is not None:
            kind, t0, t1 = own
            if previous_end is not None and t0 > previous_end + SAME:
                bars.append(_gap(bar, previous_end, t0))
            if kind == "parked":
                parked += t1 - t0
                label = f"parked {span(t1 - t0)} ({step.status})"
            elif kind == "backoff":
                label = f"waiting to retry for {span(t1 - t0)}"
            else:
                ran += t1 - t0
                label = f"{step.status} in {span(t1 - t0)}"
            bars.append(bar(kind, t0, t1, label))
        took = _took(step, now.timestamp())
        rows.append(Row(step, bars, took, len(step.failed_attempts), step.kind in WAIT_KINDS))
    ticks = [(float(p), "+" + span(whole * p / 100) if p else "0") for p in (0, 25, 50, 75, 100)]
    return Waterfall(rows, ticks, span(whole), span(ran), span(parked), retries)


def _gap(bar: Callable[[str, float, float, str], Bar], t0: float, t1: float) -> Bar:
    """The time between two attempts: the backoff (or, after a run's retry, the time it
    stood failed until someone retried it)."""
    return bar("backoff", t0, t1, f"{span(t1 - t0)} until the next attempt")


def _own_bar(
    step: StepRecord, previous_end: float | None, now: float, ended: bool
) -> tuple[str, float, float] | None:
    """The bar of the step's standing record: its last attempt, its wait, or (while
    it waits to be retried) the backoff so far; None when a failed attempt drew it."""
    if step.started_at is None:
        return None
    t0 = step.started_at.timestamp()
    if step.status == "retrying":
        if ended or previous_end is None:
            return None
        return ("backoff", previous_end, max(now, previous_end))
    if step.failed_attempts and step.status == "failed":
        last = step.failed_attempts[-1].started_at
        if last is not None and abs(last.timestamp() - t0) < SAME:
            return None
    t1 = step.ended_at.timestamp() if step.ended_at else (now if not ended else t0)
    kind = "parked" if step.kind in WAIT_KINDS else "attempt"
    return (kind, t0, max(t1, t0))


def _took(step: StepRecord, now: float) -> str:
    if step.started_at is None:
        return ""
    if step.ended_at is None:
        return f"{span(now - step.started_at.timestamp())} so far"
    return span((step.ended_at - step.started_at).total_seconds())
