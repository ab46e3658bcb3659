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

import json
from collections.abc import Callable
from datetime import UTC, datetime

from .models import QueueKey, Run
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


def _held(run: Run, rule: str) -> QueueKey | None:
    return next((k for k in (run.queue.keys if run.queue else ()) if k.rule == rule), None)


WHOLE_WORKFLOW = "the workflow"
"""How a rate or debounce without ``key=`` is named: it holds the whole workflow."""


def _key(key: QueueKey) -> str:
    """A key's value as people read it: a string without its quotes."""
    if not key.key:
        return WHOLE_WORKFLOW
    return key.value if isinstance(key.value, str) else json.dumps(key.value)


def debouncing(run: Run, now: datetime) -> str | None:
    """A debounced start gathering later ones until its window closes."""
    key = _held(run, "debounce")
    if key is None or run.due_at is None or run.due_at <= now:
        return None
    return f"debouncing until {when(run.due_at)} ({_key(key)})"


def rate_limited(run: Run, now: datetime) -> str | None:
    """A first start its rate holds back until its turn."""
    key = _held(run, "rate")
    if key is None or run.due_at is None or run.due_at <= now:
        return None
    return f"rate-limited until {when(run.due_at)} ({_key(key)})"


def key_busy(run: Run, now: datetime) -> str | None:
    """Due, but a concurrency key of it has as many runs executing as its limit."""
    for key in run.queue.keys if run.queue else ():
        if key.rule != "concurrency" or key.limit is None or key.executing is None:
            continue
        if key.executing >= key.limit:
            return f"concurrency key busy ({_key(key)}: {key.executing} of {key.limit} executing)"
    return None


def behind(run: Run, now: datetime) -> str | None:
    """Due, with due runs of a higher priority that a claim takes first."""
    queue = run.queue
    if queue is None or not queue.ahead:
        return None
    more = "+" if queue.ahead >= 1000 else ""
    runs = "run" if queue.ahead == 1 else "runs"
    return f"priority {queue.priority} behind {queue.ahead}{more} {runs}"


def scheduled(run: Run, now: datetime) -> str | None:
    """A cron slot's run, due, waiting for a worker."""
    slot = slot_of(run.id, run.workflow)
    return None if slot is None else f"scheduled (cron slot {when(slot)})"


REASONS: list[Reason] = [
    retrying, debouncing, rate_limited, delayed, key_busy, behind, scheduled,
]  # fmt: skip
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
