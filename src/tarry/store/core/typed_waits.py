"""Typed waits in the store: data checked against a wait's JSON Schema where it is
delivered, inside the delivering transaction.

A sender to a typed wait learns at once that its data does not fit
(``PayloadInvalid``, nothing stored). Data that was already waiting when the
wait began (a buffered signal, a queued message) has no sender left to tell: a
typed wait takes the oldest that fits and leaves the others where they are, as
a wait on a message name leaves other names queued. Nothing is lost and the run
is never woken into data its code cannot read.
"""

from __future__ import annotations

from typing import Any

import orjson

from ...errors import Violation
from ...wait_schema import validate
from ..base import WaitCondition
from .port import Row, Tx


def violations(schema: bytes | None, data: bytes) -> list[Violation]:
    """How ``data`` breaks ``schema`` (none when there is no schema)."""
    if schema is None:
        return []
    return validate(bytes(schema), orjson.loads(data))


async def first_fitting_signal(tx: Tx, key: str, schema: bytes) -> Row | None:
    """The oldest live buffered signal on ``key`` whose data fits ``schema``."""
    for row in await tx.all("buffered_signals", {"key": key, "now": tx.now}):
        if not violations(schema, bytes(row[1])):
            return row
    return None


async def first_fitting_message(tx: Tx, run_id: str, name: str | None, schema: bytes) -> Row | None:
    """The oldest unconsumed message of the run (of ``name``, if given) whose data
    fits ``schema``. The caller holds the run's row, which every sender takes."""
    for row in await tx.all("queued_messages", {"run_id": run_id, "name": name}):
        if not violations(schema, bytes(row[2])):
            return row
    return None


def with_schemas(waiting_for: bytes, conditions: tuple[WaitCondition, ...]) -> bytes:
    """The run's ``waiting_for`` with the schemas its wait declared: ``schema`` for a
    wait on one condition, ``schemas`` (one per condition, null where none) for a
    wait on several. Untouched, and not decoded, when no condition has one."""
    schemas = [getattr(cond, "schema", None) for cond in conditions]
    if all(schema is None for schema in schemas):
        return waiting_for
    shown: dict[str, Any] = orjson.loads(waiting_for)
    decoded = [None if s is None else orjson.loads(s) for s in schemas]
    if len(decoded) == 1:
        shown["schema"] = decoded[0]
    else:
        shown["schemas"] = decoded
    return orjson.dumps(shown)
