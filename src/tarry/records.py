"""How the client reads the store: rows into public values, and paging arguments."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from . import serde
from .models import (
    FailedAttempt,
    Queue,
    QueueKey,
    Run,
    RunChange,
    StepRecord,
    WaitingFor,
    to_datetime,
)
from .store.base import RunHistory, RunRow, StepRow, Store
from .store.flow_records import QueueRow


def to_run(row: RunRow, steps: list[StepRow]) -> Run:
    waiting = serde.loads(row.waiting_for)
    return Run(
        id=row.id,
        workflow=row.workflow,
        status=row.status,
        payload=serde.loads(row.payload),
        output=serde.loads(row.output),
        error=serde.loads(row.error),
        created_at=to_datetime(row.created_at),  # type: ignore[arg-type]
        updated_at=to_datetime(row.updated_at),  # type: ignore[arg-type]
        ended_at=to_datetime(row.ended_at),
        waiting_for=None if waiting is None else _waiting(waiting, steps),
        version=row.version,
        last_version=row.last_version,
        due_at=to_datetime(row.due_at) if row.status == "queued" else None,
        steps=[
            StepRecord(
                id=s.key,
                kind=s.kind,
                status=s.status,
                output=serde.loads(s.output),
                error=serde.loads(s.error),
                attempts=s.attempts,
                started_at=to_datetime(s.started_at),
                ended_at=to_datetime(s.ended_at),
            )
            for s in steps
        ],
    )


def _waiting(shown: dict[str, Any], steps: list[StepRow]) -> WaitingFor:
    arrived: list[int] = []
    needs = None
    for step in steps:
        if step.key == shown["step"] and step.need is not None:
            needs = step.need
            if step.output:
                arrived = [entry["index"] for entry in serde.loads(step.output)]
    return WaitingFor(
        kind=shown["kind"],
        step=shown["step"],
        key=shown.get("key"),
        expires_at=to_datetime(shown.get("expires_at")),
        waits=[_waiting(each, steps) for each in shown.get("waits", ())],
        conditions=list(shown.get("conditions", ())),
        arrived=arrived,
        needs=needs,
        schema=shown.get("schema"),
        schemas=list(shown.get("schemas", ())),
    )


def with_history(run: Run, history: RunHistory) -> Run:
    """The run with its steps' failed attempts and the changes made to it."""
    attempts = [
        FailedAttempt(
            a.key,
            a.attempt,
            serde.loads(a.error),
            to_datetime(a.started_at),
            to_datetime(a.ended_at),
        )
        for a in history.attempts
    ]
    changes = [
        RunChange(c.action, datetime.fromtimestamp(c.at, UTC), serde.loads(c.detail))
        for c in history.changes
    ]
    by_step: dict[str, list[FailedAttempt]] = {}
    for attempt in attempts:
        by_step.setdefault(attempt.step, []).append(attempt)
    steps = [replace(s, failed_attempts=by_step.get(s.id, [])) for s in run.steps]
    return replace(run, steps=steps, failed_attempts=attempts, changes=changes)


def check_limit(limit: object) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
        raise ValueError(f"limit must be an integer from 1 to 1000, got {limit!r}")


def parse_cursor(cursor: object) -> int | None:
    if cursor is None:
        return None
    if (
        not isinstance(cursor, str)
        or not cursor.isascii()
        or not cursor.isdigit()
        or len(cursor) > 18
    ):
        raise ValueError(f"invalid cursor {cursor!r}: pass a next_cursor from a listing")
    return int(cursor)


def to_queue(row: QueueRow) -> Queue:
    keys = tuple(
        QueueKey(k.rule, k.key, serde.loads(k.value.encode()) if k.value else None,
                 k.executing, k.limit)
        for k in row.keys
    )  # fmt: skip
    return Queue(row.priority, keys, row.ahead)


async def with_queues(store: Store, runs: list[Run]) -> list[Run]:
    """``runs`` with what holds back those queued (one read for them all)."""
    queued = [run.id for run in runs if run.status == "queued"]
    if not queued:
        return runs
    states = await store.queue_states(queued)
    return [replace(r, queue=to_queue(states[r.id])) if r.id in states else r for r in runs]
