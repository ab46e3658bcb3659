"""Rows in and out of SQL, and the JSON a store writes itself: shared by both stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from .base import RunRow, StepRow

RUN_COLUMNS = (
    "seq, id, workflow, status, payload, output, error, created_at, updated_at, ended_at, "
    "due_at, waiting_for, cancel_requested, trigger, version, last_version"
)


def run_row(row: Sequence[Any]) -> RunRow:
    return RunRow(
        seq=row[0],
        id=row[1],
        workflow=row[2],
        status=row[3],
        payload=row[4],
        output=row[5],
        error=row[6],
        created_at=row[7],
        updated_at=row[8],
        ended_at=row[9],
        due_at=row[10],
        waiting_for=row[11],
        cancel_requested=bool(row[12]),
        trigger=row[13],
        version=row[14] if len(row) > 14 else None,
        last_version=row[15] if len(row) > 15 else None,
        trace=row[16] if len(row) > 16 else None,
    )


def step_row(row: Sequence[Any]) -> StepRow:
    # row[0] is run_id
    return StepRow(
        key=row[1],
        kind=row[2],
        status=row[3],
        output=row[4],
        error=row[5],
        attempts=row[6],
        started_at=row[7],
        ended_at=row[8],
        pos=row[9] if len(row) > 9 else None,
        spec=row[10] if len(row) > 10 else None,
        due_at=row[11] if len(row) > 11 else None,
        need=row[12] if len(row) > 12 else None,
        trace=row[13] if len(row) > 13 else None,
    )


def step_params(run_id: str, step: StepRow) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "key": step.key,
        "kind": step.kind,
        "status": step.status,
        "output": step.output,
        "error": step.error,
        "attempts": step.attempts,
        "started_at": step.started_at,
        "ended_at": step.ended_at,
        "pos": step.pos,
        "spec": step.spec,
        "due_at": step.due_at,
        "need": step.need,
    }


def error_json(kind: str, message: str, **extra: Any) -> bytes:
    return orjson.dumps({"type": kind, "message": message, **extra})


def indexed(index: int, value: bytes) -> bytes:
    """A wait_for_any result: which condition fired, and its value."""
    return b'{"index":%d,"value":%s}' % (index, value)


def event_json(name: str, data: bytes, event_id: str, ts: float) -> bytes:
    """An event as a wait returns it, spliced around the stored ``data`` rather than
    re-encoded: data nested to the limit stays within it."""
    return b'{"name":%s,"data":%s,"id":%s,"ts":%s}' % (
        orjson.dumps(name),
        data,
        orjson.dumps(event_id),
        orjson.dumps(ts),
    )


def message_json(name: str, data: bytes, sent_at: float) -> bytes:
    return b'{"name":%s,"data":%s,"sent_at":%s}' % (orjson.dumps(name), data, orjson.dumps(sent_at))


def child_json(status: str, output: bytes | None, error: bytes | None) -> bytes:
    """What an ``invoke`` step stores: how the child ended and with what."""
    return b'{"status":%s,"output":%s,"error":%s}' % (
        orjson.dumps(status),
        output or b"null",
        error or b"null",
    )
