"""Waiters, and the wait they resolve: filing a waiter (with the event path it is
found by), and delivering to one wait.

A park files its waiters here, as a run's ``cancel_on`` does, and every delivery
(a signal, an event, a message, a child's end, a token, a timeout) ends in
``resolve_wait``. Apart from parking (``waits``), which decides what a wait
files, and from deliveries (``delivery``), which decide who wins a waiter.
"""

from __future__ import annotations

from typing import Any

import orjson

from ...models import WaiterKind
from ..base import EventWait, InvokeWait, MessageWait, SignalWait, StepRow, WaitCondition
from ..matching import index_value, trigger_of
from ..rows import indexed
from ..token_records import TokenWait
from .fence import stored_step
from .port import Tx


async def run_trigger(tx: Tx, run_id: str) -> Any:
    found = await tx.one("run_trigger", {"id": run_id})
    return None if found is None else trigger_of(*found)


def event_value_lock(name: str, path: str, value: str) -> str:
    """The lock a wait on events named ``name`` with ``value`` at ``path`` shares
    with the senders of such events."""
    return f"{name}\n{path}\n{value}"


async def file_event_path(tx: Tx, name: str, path: str) -> None:
    """From now on, every event named ``name`` has its value at ``path`` indexed
    (``event_keys``): events find waits filed there, and lookbacks find events."""
    await tx.run("file_event_path", {"name": name, "path": path, "now": tx.now})


def waiter_key(cond: WaitCondition) -> str | None:
    """What a waiter is found by: the signal key, the event name, the message name
    (None: any), the child run's id, the token's id."""
    match cond:
        case SignalWait(key=key):
            return key
        case EventWait(filing=filing):
            return filing.event
        case MessageWait(name=name):
            return name
        case InvokeWait(child=child):
            return child.id
        case TokenWait(token_id=token_id):
            return token_id


async def insert_waiter(
    tx: Tx,
    run_id: str,
    step_key: str,
    cond: WaitCondition,
    expires_at: float | None,
    index: int | None = None,
    *,
    kind: WaiterKind | None = None,
    filed: dict[tuple[str, str], float] | None = None,
) -> None:
    """File one waiter; an event waiter's path is filed for its name unless ``filed``
    (what the caller read of ``event_paths``) says it is already."""
    filing = cond.filing if isinstance(cond, EventWait) else None
    path = None if filing is None else filing.path
    if (
        filing is not None
        and path is not None
        and (filed is None or (filing.event, path) not in filed)
    ):
        await file_event_path(tx, filing.event, path)
        if filed is not None:
            filed[filing.event, path] = tx.now
    await tx.run(
        "insert_waiter",
        {
            "run_id": run_id,
            "step_key": step_key,
            "kind": kind or cond.kind,
            "key": waiter_key(cond),
            "expires_at": expires_at,
            "path": filing.path if filing is not None else None,
            "value": index_value(filing.value) if filing and filing.value is not None else None,
            "expr": filing.expr if filing is not None else None,
            "idx": index,
            # A typed wait's JSON Schema, checked at delivery (typed_waits).
            "json_schema": getattr(cond, "schema", None),
        },
    )


async def resolve_wait(
    tx: Tx,
    run_id: str,
    step_key: str,
    status: str,
    output: bytes | None,
    error: bytes | None,
    index: int | None = None,
    trace: str | None = None,
) -> None:
    """Deliver to one wait: its waiters go (not the run's ``cancel`` ones), its step
    gets ``output`` (as ``{"index", "value"}`` for the condition ``index`` of a
    wait_for_any) and the sender's ``trace``, and the run is due now. The caller
    holds the run's row."""
    if index is not None and status == "completed":
        stored = await stored_step(tx, run_id, step_key)
        if stored is not None and stored.need is not None:
            await _arrive(tx, run_id, stored, index, output or b"null", trace)
            return
        output = indexed(index, output or b"null")
    await tx.run(
        "resolve_wait",
        {
            "status": status,
            "output": output,
            "error": error,
            "now": tx.now,
            "run_id": run_id,
            "key": step_key,
            "trace": trace,
        },
    )
    tx.wake()


async def _arrive(
    tx: Tx, run_id: str, stored: StepRow, index: int, value: bytes, trace: str | None
) -> None:
    """One arrival for a wait that needs several (wait_for_all, a quorum): kept as it
    comes, its condition's waiters gone; the wait resolves (and its other waiters go)
    with the arrival that completes it."""
    arrived = orjson.loads(stored.output) if stored.output else []
    arrived.append({"index": index, "value": orjson.loads(value)})
    output = orjson.dumps(arrived)
    if len(arrived) >= (stored.need or 1):
        await resolve_wait(tx, run_id, stored.key, "completed", output, None, trace=trace)
        return
    await tx.run("delete_condition_waiters", {"run_id": run_id, "key": stored.key, "idx": index})
    await tx.run("update_step_output", {"run_id": run_id, "key": stored.key, "output": output})
