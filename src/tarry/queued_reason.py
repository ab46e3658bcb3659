"""Why a queued run is not running yet, in a few words for people.

The dashboard's run page and runs list, ``tarry run`` and ``tarry runs`` all say it
through ``why_queued``, so each reason is written once. A reason is a function of
the run and the clock's now that answers with its words, or None when it does not
apply; ``REASONS`` asks them in order and the first answer stands, so a more
specific reason goes before a general one (a run held back by a rate limit is also
due later, but "rate-limited" says more than "delayed"). A queued run that no
reason explains is due now and waits only for a free worker: None.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from .models import Run
from .schedules import slot_of

Reason = Callable[[Run, datetime], str | None]


def when(moment: datetime) -> str:
    """A time as every reason writes it: UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def retrying(run: Run, now: datetime) -> str | None:
    """Waiting out a failed step's backoff (known where the run's steps are loaded)."""
    if run.due_at is None or run.due_at <= now:
        return None
    for step in run.steps:
        if step.status == "retrying":
            return f"retrying step {step.id!r} at {when(run.due_at)}"
    return None


def delayed(run: Run, now: datetime) -> str | None:
    """A start with ``delay=`` / ``start_at=`` whose time has not come."""
    if run.due_at is None or run.due_at <= now:
        return None
    return f"delayed until {when(run.due_at)}"


def scheduled(run: Run, now: datetime) -> str | None:
    """A cron slot's run, due, waiting for a worker."""
    slot = slot_of(run.id, run.workflow)
    return None if slot is None else f"scheduled (cron slot {when(slot)})"


REASONS: list[Reason] = [retrying, delayed, scheduled]
"""Asked in order; the first that answers is the reason."""


def why_queued(run: Run, now: datetime | float) -> str | None:
    """Why ``run`` is queued and not running at ``now`` (the App's clock: a datetime
    or epoch seconds), or None when it is not queued or waits only for a worker."""
    if run.status != "queued":
        return None
    moment = now if isinstance(now, datetime) else datetime.fromtimestamp(now, UTC)
    for reason in REASONS:
        found = reason(run, moment)
        if found is not None:
            return found
    return None
