"""The shared store: PostgreSQL through psycopg 3, for many workers on many machines.

Same contract and semantics as the SQLite store; what differs is how concurrent
transactions from other processes are kept apart:

- Claims take due runs with ``FOR UPDATE SKIP LOCKED``, so workers never wait
  for each other and never claim the same run. A workflow with a concurrency
  cap is counted under a transaction-scoped advisory lock on its name (taken in
  name order), so claims by different processes count its leases in turn.
- Everything that touches a signal key (a wait registering on it, a sender
  delivering or buffering) first takes a transaction-scoped advisory lock on the
  key, so a signal sent while a run parks is either buffered and then consumed
  by the wait, or delivered to the waiter; never lost, never both. Senders of an
  event share a lock on its name that a wait on it takes alone; a wait on a
  child run and the child's end take a lock on the child's id.
- Locks are taken run row first, then that run's waiters, in every transaction,
  so deliveries, timeouts resolved by a claim and cancellations queue behind one
  another instead of deadlocking. A run's mailbox is guarded by its row: a sender
  locks it, and a wait holds it (through the fence) while it looks for a message.
- A commit that makes a run due sends ``NOTIFY`` on the schema's channel in the
  same transaction; every store LISTENs there and wakes its workers.

Connection errors are retried with backoff for ``retry_seconds``, and so are
transactions PostgreSQL rolled back (a deadlock it broke, a serialization
failure). A failure before COMMIT is always safe to retry. A failure during
COMMIT leaves the outcome unknown: fenced writes are retried (the lease token
makes them idempotent, and the retry of one that did commit reports
``LeaseLost`` or finds the step already stored), ``create_run`` is ``ON CONFLICT
DO NOTHING``, but a client ``send_signal`` could buffer twice and a
``send_message`` could queue twice, so those raise ``StoreError`` instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict
from functools import partial
from typing import Any, Literal

import orjson
from psycopg import sql

from ..errors import LeaseLost, StoreError
from ..ids import new_id
from .base import (
    ClaimBatch,
    ClaimedRun,
    EventOutcome,
    EventRow,
    EventWait,
    Filing,
    Lease,
    LeaseStatus,
    MessageRow,
    NewEvent,
    NewRun,
    ParkResult,
    RunRow,
    SignalOutcome,
    StepRow,
    StepSender,
    WaitCondition,
    WaitSpec,
    WakeListener,
    WorkflowConfig,
)
from .matching import leaf_keys, matches, resolve_filing, trigger_of
from .postgres_io import Body, IOLoop, T, Tx, masked, parse_url
from .rows import (
    ENDED,
    RUN_COLUMNS,
    child_json,
    error_json,
    indexed,
    message_json,
    run_row,
    step_params,
    step_row,
)

MessageStatus = Literal["delivered", "queued", "not_found", "finished"]


# -- pieces of transactions -------------------------------------------------------------


async def _fence(tx: Tx, lease: Lease, now: float) -> bool:
    # An UPDATE, not a read: it takes the run's row lock, so a claim that would take
    # the run over (it locks the row too) waits for this transaction or is skipped.
    row = await tx.one("fence", {"now": now, "run_id": lease.run_id, "token": lease.token})
    if row is None:
        raise _lease_lost(lease)
    return bool(row[0])


def _lease_lost(lease: Lease) -> LeaseLost:
    return LeaseLost(
        f"the lease on run {lease.run_id!r} was taken over by another worker; "
        "this worker's write was rejected and the newer attempt is kept"
    )


async def _lock_key(tx: Tx, schema: str, key: str) -> None:
    await tx.one("key_lock", {"lock": f"{schema}:signal:{key}"})


async def _lock_event_name(tx: Tx, schema: str, name: str, *, shared: bool) -> None:
    """Senders of an event share this lock; a wait on the event takes it alone, so
    its lookback and its new waiter cannot both miss an event sent meanwhile."""
    await tx.one("shared_lock" if shared else "key_lock", {"lock": f"{schema}:event:{name}"})


async def _lock_child(tx: Tx, schema: str, child_id: str) -> None:
    """A wait on a child run and the child's end take this lock, so the wait either
    sees the child ended or leaves a waiter the end finds."""
    await tx.one("key_lock", {"lock": f"{schema}:invoke:{child_id}"})


async def _lock_cap(tx: Tx, schema: str, workflow: str) -> None:
    """Claims of a capped workflow count its leased runs one after another."""
    await tx.one("key_lock", {"lock": f"{schema}:tarry-cap:{workflow}"})


def _db_value(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL (matching.MISSING has one); canonical JSON
    # never contains a raw control character, so this spelling cannot collide.
    return None if value is None else value.replace("\x00", "\\u0000")


async def _lock_signal_waiter(tx: Tx, key: str) -> tuple[str, str, int | None] | None:
    """The run waiting on ``key`` with its run row and waiter row locked (run first,
    as everywhere), or None. The caller holds the key's advisory lock, so no new
    waiter can appear; one found may vanish (timed out, cancelled) until locked."""
    found = await tx.one("lock_signal_waiter_run", {"key": key})
    if found is None:
        return None
    locked = await tx.one("lock_signal_waiter", {"key": key, "run_id": found[0]})
    return None if locked is None else (locked[0], locked[1], locked[2])


async def _resolve_wait(
    tx: Tx,
    run_id: str,
    step_key: str,
    status: str,
    output: bytes | None,
    error: bytes | None,
    now: float,
    index: int | None = None,
) -> None:
    """Deliver to one wait: its waiters go (not the run's ``cancel`` ones), its step
    gets ``output`` (as ``{"index", "value"}`` for the condition ``index`` of a
    wait_for_any), and the run is due now. The caller holds the run's row lock."""
    if index is not None and status == "completed":
        output = indexed(index, output or b"null")
    await tx.run(
        "resolve_wait",
        {
            "status": status,
            "output": output,
            "error": error,
            "now": now,
            "run_id": run_id,
            "key": step_key,
            "channel": tx.channel,
        },
    )
    tx.wake = tx.notified = True


async def _notify_parent(tx: Tx, schema: str, run_id: str, now: float) -> None:
    """A run has ended: resume the run whose ``invoke`` waits for it, if any."""
    await _lock_child(tx, schema, run_id)
    waiter = await tx.one("invoke_waiter", {"key": run_id})
    if waiter is None:
        return
    waiter_id, parent_id, step_key, index = waiter
    await tx.one("lock_run", {"id": parent_id})
    if await tx.one("lock_waiter", {"id": waiter_id}) is None:
        return  # the wait was resolved otherwise (timed out, another condition) meanwhile
    found = await tx.one("select_run", {"id": run_id})
    assert found is not None
    child = run_row(found)
    result = child_json(child.status, child.output, child.error)
    await _resolve_wait(tx, parent_id, step_key, "completed", result, None, now, index)


async def _cancel_now(tx: Tx, schema: str, run_id: str, now: float) -> None:
    await tx.run("delete_run_waiters", {"run_id": run_id})
    await tx.run("cancel_waiting_steps", {"run_id": run_id, "now": now})
    await tx.run("end_run_with_cancel_reason", {"run_id": run_id, "now": now})
    await _notify_parent(tx, schema, run_id, now)


async def _cancel_or_flag(
    tx: Tx, schema: str, run_id: str, now: float, run: RunRow | None = None
) -> bool:
    """Cancel a run that no worker holds at once; leave a leased one flagged to stop
    at its next step. Returns whether it was cancelled now."""
    if run is None:
        found = await tx.one("lock_run", {"id": run_id})
        if found is None:
            return False
        run = run_row(found)
        if run.status in ENDED:
            return False
        if not run.cancel_requested:
            reason = error_json("Cancelled", "cancelled by an event")
            await tx.run("request_cancel", {"reason": reason, "now": now, "run_id": run_id})
    leased = run.status == "running" and run.due_at is not None and run.due_at > now
    if leased:
        return False
    await _cancel_now(tx, schema, run_id, now)
    return True


async def _insert_waiter(
    tx: Tx,
    run_id: str,
    step_key: str,
    kind: str,
    key: str | None,
    expires_at: float | None,
    *,
    filing: Filing | None = None,
    index: int | None = None,
) -> None:
    await tx.run(
        "insert_waiter",
        {
            "run_id": run_id,
            "step_key": step_key,
            "kind": kind,
            "key": filing.event if filing is not None else key,
            "expires_at": expires_at,
            "path": filing.path if filing is not None else None,
            "value": _db_value(filing.value) if filing is not None else None,
            "expr": filing.expr if filing is not None else None,
            "idx": index,
        },
    )


async def _insert_run(tx: Tx, run: NewRun, now: float) -> bool:
    created = await tx.run(
        "insert_run",
        {
            "id": run.id,
            "workflow": run.workflow,
            "payload": run.payload,
            "trigger": run.trigger,
            "parent": run.parent,
            "now": now,
        },
    )
    if not created:
        return False
    tx.wake = True
    row = await tx.one("workflow_cancel_on", {"id": run.workflow})
    if row is not None and bytes(row[0]) != b"[]":
        trigger = trigger_of(run.workflow, run.payload, run.trigger)
        for item in orjson.loads(row[0]):
            filing = resolve_filing(Filing(**item), trigger)
            await _insert_waiter(tx, run.id, "", "cancel", None, None, filing=filing)
    return True


async def _run_trigger(tx: Tx, run_id: str) -> Any:
    found = await tx.one("run_trigger", {"id": run_id})
    return None if found is None else trigger_of(*found)


async def _look_back(tx: Tx, run_id: str, wait: EventWait) -> bytes | None:
    """The oldest stored event that satisfies the wait, if any: the lookback."""
    filing = wait.filing
    trigger = None if filing.expr is None else await _run_trigger(tx, run_id)
    skip = set(wait.exclude)
    for event_id, name, data, ts in await tx.all(
        "events_since", {"name": filing.event, "since": wait.since}
    ):
        if event_id in skip:
            continue
        incoming = {"name": name, "data": orjson.loads(data), "id": event_id, "ts": ts}
        if matches(filing.path, filing.value, filing.expr, trigger, incoming):
            return orjson.dumps(incoming)
    return None


async def _available(
    tx: Tx, run_id: str, step_key: str, cond: WaitCondition, now: float
) -> bytes | None:
    """What already satisfies ``cond`` (consumed here), or None. The caller holds the
    locks that keep it from changing: the signal key's, the event name's, the run's
    row (its mailbox), the child's id."""
    if cond.kind == "signal":
        buffered = await tx.one("first_buffered_signal", {"key": cond.key, "now": now})
        if buffered is None:
            return None
        await tx.run("delete_signal", {"id": buffered[0]})
        data: bytes = buffered[1]
        return data
    if cond.kind == "event":
        assert cond.event is not None
        return None if cond.event.since is None else await _look_back(tx, run_id, cond.event)
    if cond.kind == "message":
        row = await tx.one("first_message", {"run_id": run_id, "name": cond.key})
        if row is None:
            return None
        await tx.run("consume_message", {"seq": row[0], "step_key": step_key, "now": now})
        return message_json(row[1], row[2], row[3])
    assert cond.child is not None
    await _insert_run(tx, cond.child, now)
    found = await tx.one("select_run", {"id": cond.child.id})
    assert found is not None
    child = run_row(found)
    if child.status in ENDED:
        return child_json(child.status, child.output, child.error)
    return None


async def _send_event(
    tx: Tx, schema: str, event: NewEvent, dedupe_seconds: float, now: float
) -> EventOutcome:
    await _lock_event_name(tx, schema, event.name, shared=True)
    if event.dedupe:
        await tx.one("key_lock", {"lock": f"{schema}:event-id:{event.id}"})
        seen = await tx.one("event_by_id", {"id": event.id})
        if seen is not None:
            if seen[0] > now - dedupe_seconds:
                return EventOutcome(event.id, duplicate=True)
            await tx.run("delete_event", {"id": event.id})
    await tx.run(
        "insert_event", {"id": event.id, "name": event.name, "data": event.data, "ts": now}
    )
    incoming = {"name": event.name, "data": orjson.loads(event.data), "id": event.id, "ts": now}
    incoming_json = orjson.dumps(incoming)
    started: list[str] = []
    for workflow, expr in await tx.all("triggers_for_event", {"event": event.name}):
        if expr is None or matches(None, None, expr, incoming, incoming):
            run = NewRun(new_id(), workflow, event.data, incoming_json)
            if await _insert_run(tx, run, now):
                started.append(run.id)
    # Candidates: the waiters filed under one of the event's own (path, value) keys,
    # plus those with no indexable equality. Never a scan of all waiters.
    candidates: dict[int, tuple[str, str, str, str | None, int | None]] = {}
    for path, value in leaf_keys(incoming):
        for row in await tx.all(
            "waiters_by_value", {"name": event.name, "path": path, "value": _db_value(value)}
        ):
            candidates[row[0]] = (row[1], row[2], row[3], row[4], row[5])
    for row in await tx.all("waiters_unindexed", {"name": event.name}):
        candidates[row[0]] = (row[1], row[2], row[3], row[4], row[5])
    resumed: list[str] = []
    cancelled: list[str] = []
    done: set[str] = set(started)
    for waiter_id in sorted(candidates):
        run_id, step_key, kind, expr, index = candidates[waiter_id]
        if run_id in done:
            continue
        if expr is not None and not matches(
            None, None, expr, await _run_trigger(tx, run_id), incoming
        ):
            continue
        # Lock the run, then make sure its waiter is still there: a timeout, a
        # cancel or another event may have taken it since it was read.
        await tx.one("lock_run", {"id": run_id})
        if await tx.one("lock_waiter", {"id": waiter_id}) is None:
            continue
        done.add(run_id)
        if kind == "event":
            await _resolve_wait(tx, run_id, step_key, "completed", incoming_json, None, now, index)
            resumed.append(run_id)
        elif await _cancel_or_flag(tx, schema, run_id, now):
            cancelled.append(run_id)
    return EventOutcome(event.id, False, tuple(started), tuple(resumed), tuple(cancelled))


async def _release(lease: Lease, tx: Tx) -> None:
    now = time.time()
    await _fence(tx, lease, now)
    params = {"status": "queued", "due_at": now, "waiting_for": None, "now": now}
    await tx.run("release_run", {**params, "run_id": lease.run_id})
    tx.wake = True


async def _stored_step(tx: Tx, run_id: str, key: str) -> StepRow | None:
    row = await tx.one("select_step", {"run_id": run_id, "key": key})
    return None if row is None else step_row(row)


class PostgresStore:
    def __init__(self, url: str, *, pool_size: int = 10, retry_seconds: float = 30.0) -> None:
        self.url = url
        self._conninfo, self.schema, _ = parse_url(url)
        self.pool_size = pool_size
        self.retry_seconds = retry_seconds
        self._listeners: list[WakeListener] = []
        self._lock = threading.Lock()
        self._io: IOLoop | None = None
        self._ready: concurrent.futures.Future[None] | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({masked(self.url)!r}, schema={self.schema!r})"

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        with self._lock:
            if self._ready is None:
                io = IOLoop(
                    self.url,
                    self._conninfo,
                    self.schema,
                    self._listeners,
                    pool_size=self.pool_size,
                    retry_seconds=self.retry_seconds,
                )
                io.thread.start()
                self._io = io
                self._ready = asyncio.run_coroutine_threadsafe(io.start(), io.loop)
            ready, started = self._ready, self._io
        assert started is not None
        io = started
        try:
            await asyncio.shield(asyncio.wrap_future(ready))
        except asyncio.CancelledError:
            raise
        except BaseException:
            with self._lock:
                owner = self._ready is ready
                if owner:
                    self._ready = self._io = None
            if owner:
                io.halt()
                await asyncio.to_thread(io.thread.join)
            raise

    async def bind_loop(self) -> None:
        io = self._io
        if io is not None:
            await io.attach()

    async def unbind_loop(self) -> None:
        io = self._io
        if io is not None:
            await io.detach()

    async def close(self) -> None:
        with self._lock:
            io, ready = self._io, self._ready
            self._io = self._ready = None
        if io is None or ready is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(ready)
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(io.stop(), io.loop))
        io.halt()
        await asyncio.to_thread(io.thread.join)

    async def _call(
        self,
        body: Body[T],
        *,
        idempotent: bool = True,
        abandoned: Callable[[T], Awaitable[None]] | None = None,
        single: bool = False,
    ) -> T:
        io, ready = self._io, self._ready
        if io is None or ready is None or not ready.done() or ready.exception() is not None:
            raise StoreError(f"the store {masked(self.url)!r} is not open")
        return await io.call(body, idempotent=idempotent, abandoned=abandoned, single=single)

    async def _batched(self, query: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """One of the hot single-statement writes, group-committed with its peers."""
        io, ready = self._io, self._ready
        if io is None or ready is None or not ready.done() or ready.exception() is not None:
            raise StoreError(f"the store {masked(self.url)!r} is not open")
        return await io.batcher().submit(query, params)

    # -- wake-ups --------------------------------------------------------------------

    def add_wake_listener(self, listener: WakeListener) -> None:
        self._listeners.append(listener)

    def remove_wake_listener(self, listener: WakeListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    # -- runs ------------------------------------------------------------------------

    async def create_run(self, run: NewRun) -> tuple[str, bool]:
        io = self._io
        if io is None:
            raise StoreError(f"the store {masked(self.url)!r} is not open")
        params = {
            "id": run.id,
            "workflow": run.workflow,
            "payload": run.payload,
            "trigger": run.trigger,
            "parent": run.parent,
            "now": time.time(),
            "channel": io.channel,
        }
        row = await self._batched("insert_plain_run", params)
        assert row is not None
        if row[0]:  # else the workflow has cancel_on conditions: the full path
            return run.id, bool(row[1])

        async def body(tx: Tx) -> tuple[str, bool]:
            return run.id, await _insert_run(tx, run, time.time())

        return await self._call(body)

    async def sync_workflows(self, configs: Sequence[WorkflowConfig]) -> None:
        async def body(tx: Tx) -> None:
            now = time.time()
            for config in sorted(configs, key=lambda c: c.id):
                cancel_on = orjson.dumps([asdict(f) for f in config.cancel_on])
                await tx.run(
                    "upsert_workflow", {"id": config.id, "cancel_on": cancel_on, "now": now}
                )
                await tx.run("delete_workflow_triggers", {"workflow": config.id})
                for event, expr in config.triggers:
                    await tx.run(
                        "insert_trigger", {"workflow": config.id, "event": event, "expr": expr}
                    )

        await self._call(body)

    async def send_event(
        self, event: NewEvent, *, dedupe_seconds: float, sender: StepSender | None = None
    ) -> EventOutcome:
        async def body(tx: Tx) -> EventOutcome:
            now = time.time()
            if sender is not None:
                await _fence(tx, sender.lease, now)
                if tx.retried_unknown:
                    done = await _stored_step(tx, sender.lease.run_id, sender.step_key)
                    if done is not None and done.status == "completed" and done.output:
                        return EventOutcome(orjson.loads(done.output)[0], duplicate=True)
            outcome = await _send_event(tx, self.schema, event, dedupe_seconds, now)
            if sender is not None:
                output = orjson.dumps([outcome.event_id])
                step = StepRow(
                    sender.step_key, "send_event", "completed", output, None, 1,
                    sender.started_at, now,
                )  # fmt: skip
                await tx.run("upsert_step", step_params(sender.lease.run_id, step))
            return outcome

        # After an unknown commit, an event with an id is found again as a duplicate
        # and a step's event as its stored step; an event without either could be
        # stored twice, so that one is not retried.
        return await self._call(body, idempotent=event.dedupe or sender is not None)

    async def claim(
        self,
        workflows: Sequence[str],
        limit: int,
        lease_seconds: float,
        caps: Mapping[str, int] | None = None,
    ) -> ClaimBatch:
        names = list(dict.fromkeys(workflows))
        capped = sorted(name for name in (caps or {}) if name in names)

        async def body(tx: Tx) -> ClaimBatch:
            now = time.time()
            # Each capped workflow's leases are counted under its lock, held to COMMIT,
            # so that a claim in another process counts after this one's leases.
            room: dict[str, int] = {}
            for name in capped:
                await _lock_cap(tx, self.schema, name)
                found = await tx.one("count_leased", {"workflow": name})
                assert found is not None and caps is not None
                room[name] = caps[name] - int(found[0])
            free = [name for name in names if name not in room]
            due: list[tuple[Any, ...]] = []
            if free and limit > 0:
                due += await tx.all("due_runs", {"now": now, "workflows": free, "limit": limit})
            for name in capped:
                # At its cap a workflow can still have its expired leases taken over:
                # that leaves its count of leased runs as it was.
                query = "due_runs" if room[name] > 0 else "due_expired_leases"
                due += await tx.all(query, {"now": now, "workflows": [name], "limit": limit})
            due.sort(key=lambda row: row[4])
            live: list[str] = []
            waiting: list[str] = []
            for run_id, workflow, status, cancel_requested, _due_at in due:
                if len(live) == limit:
                    break
                if cancel_requested:
                    await _cancel_now(tx, self.schema, run_id, now)
                    continue
                if workflow in room and status != "running":
                    if room[workflow] <= 0:
                        continue
                    room[workflow] -= 1
                live.append(run_id)
                if status == "waiting":
                    waiting.append(run_id)
            if waiting:
                await tx.run("expire_waiting_steps", {"ids": waiting, "now": now})
                await tx.run("delete_wait_waiters_of_runs", {"ids": waiting})
            claimed: list[ClaimedRun] = []
            if live:
                tokens = {run_id: os.urandom(12).hex() for run_id in live}
                rows = await tx.all(
                    "lease_runs",
                    {
                        "ids": live,
                        "tokens": [tokens[run_id] for run_id in live],
                        "lease_until": now + lease_seconds,
                        "now": now,
                    },
                )
                runs = {row[1]: run_row(row) for row in rows}
                steps: dict[str, list[StepRow]] = {run_id: [] for run_id in live}
                for row in await tx.all("select_steps_by_run_ids", {"ids": live}):
                    steps[row[0]].append(step_row(row))
                claimed = [
                    ClaimedRun(runs[run_id], steps[run_id], Lease(run_id, tokens[run_id]))
                    for run_id in live
                ]
            # Workflows at their cap wait for a run to end (a wake-up), not for a time.
            saturated = [name for name in capped if room[name] <= 0]
            found = await tx.one(
                "next_due",
                {
                    "workflows": [name for name in names if name not in saturated],
                    "saturated": saturated,
                },
            )
            return ClaimBatch(claimed, None if found is None else found[0])

        async def give_back(batch: ClaimBatch) -> None:
            # The worker stopped waiting for this claim: hand the runs back now
            # rather than leave them leased to nobody until the lease expires.
            for claimed in batch.runs:
                with contextlib.suppress(Exception):
                    await self._call(partial(_release, claimed.lease))

        if capped:
            return await self._call(body, abandoned=give_back)

        async def plain(tx: Tx) -> tuple[ClaimBatch, bool]:
            # The common claim in one statement (lease the due runs that need nothing
            # but a lease, and say when the next is due), then their steps: two round
            # trips instead of a transaction of six. A timed-out wait or a requested
            # cancellation among the due runs is left to the full claim below.
            now = time.time()
            rows = await tx.all(
                "claim_plain",
                {"now": now, "workflows": names, "limit": limit,
                 "lease_until": now + lease_seconds},
            )  # fmt: skip
            next_due, special = rows[0][-2], rows[0][-1]
            leased = [row for row in rows if row[1] is not None]
            steps: dict[str, list[StepRow]] = {row[1]: [] for row in leased}
            if leased:
                for row in await tx.all("select_steps_by_run_ids", {"ids": list(steps)}):
                    steps[row[0]].append(step_row(row))
            claimed = [
                ClaimedRun(run_row(row[:-3]), steps[row[1]], Lease(row[1], row[-3]))
                for row in leased
            ]
            return ClaimBatch(claimed, next_due), bool(special)

        async def give_plain_back(result: tuple[ClaimBatch, bool]) -> None:
            await give_back(result[0])

        batch, special = await self._call(plain, abandoned=give_plain_back, single=True)
        if not special or len(batch.runs) >= limit:
            return batch
        limit -= len(batch.runs)
        rest = await self._call(body, abandoned=give_back)
        return ClaimBatch(batch.runs + rest.runs, rest.next_due)

    async def renew(self, leases: Sequence[Lease], lease_seconds: float) -> LeaseStatus:
        if not leases:
            return LeaseStatus()
        ordered = sorted(leases, key=lambda lease: lease.run_id)

        async def body(tx: Tx) -> LeaseStatus:
            rows = await tx.all(
                "renew_leases",
                {
                    "ids": [lease.run_id for lease in ordered],
                    "tokens": [lease.token for lease in ordered],
                    "lease_until": time.time() + lease_seconds,
                },
            )
            kept = {row[0]: bool(row[1]) for row in rows}
            return LeaseStatus(
                lost={lease.run_id for lease in ordered if lease.run_id not in kept},
                cancel_requested={run_id for run_id, cancel in kept.items() if cancel},
            )

        return await self._call(body)

    async def save_step(self, lease: Lease, step: StepRow) -> bool:
        # The hottest write: one statement that checks the lease (locking the run's
        # row) and stores the step, grouped with other runs' step writes into one
        # transaction when several are ready at once.
        params = {**step_params(lease.run_id, step), "token": lease.token}

        row = await self._batched("save_step", params)
        if row is None:
            raise _lease_lost(lease)
        return bool(row[0])

    async def retry_step(self, lease: Lease, step: StepRow, due_at: float) -> None:
        params = step_params(lease.run_id, step)

        async def body(tx: Tx) -> None:
            now = time.time()
            await _fence(tx, lease, now)
            await tx.run("upsert_step", params)
            await tx.run(
                "release_run",
                {
                    "status": "queued",
                    "due_at": due_at,
                    "waiting_for": None,
                    "now": now,
                    "run_id": lease.run_id,
                },
            )
            tx.wake = True

        await self._call(body)

    async def release(self, lease: Lease) -> None:
        await self._call(partial(_release, lease))

    async def park(self, lease: Lease, wait: WaitSpec) -> ParkResult:
        conditions = wait.conditions
        signal_keys = sorted({c.key for c in conditions if c.kind == "signal" and c.key})
        event_names = sorted(
            {c.event.filing.event for c in conditions if c.kind == "event" and c.event}
        )
        children = sorted({c.child.id for c in conditions if c.kind == "invoke" and c.child})

        async def body(tx: Tx) -> ParkResult:
            # Advisory locks first, each kind in a fixed order, then the run's row
            # (the fence): the order every sender takes them in.
            for key in signal_keys:
                await _lock_key(tx, self.schema, key)
            for name in event_names:
                await _lock_event_name(tx, self.schema, name, shared=False)
            for child_id in children:
                await _lock_child(tx, self.schema, child_id)
            now = time.time()
            await _fence(tx, lease, now)
            if tx.retried_unknown:
                # The first attempt may have committed a wait resolved at once; a
                # second must not consume another buffered signal or message.
                done = await _stored_step(tx, lease.run_id, wait.step_key)
                if done is not None and done.status != "waiting":
                    if done.status == "failed":
                        other = (orjson.loads(done.error or b"{}") or {}).get("other_run")
                        return ParkResult("conflict", done, other)
                    return ParkResult("resolved", done)
            started = wait.started_at or now

            async def settle(status: str, output: bytes | None, error: bytes | None) -> StepRow:
                ended = None if status == "waiting" else now
                step = StepRow(wait.step_key, wait.kind, status, output, error, 1, started, ended)
                await tx.run("upsert_step", step_params(lease.run_id, step))
                return step

            for index, cond in enumerate(conditions):
                if cond.kind == "signal":
                    holder = await tx.one("signal_waiter", {"key": cond.key})
                    if holder is not None and holder[0] != lease.run_id:
                        other_run: str = holder[0]
                        if cond.on_conflict == "fail":
                            error = error_json(
                                "SignalConflict",
                                f"run {other_run!r} already waits on signal {cond.key!r}; "
                                'pass on_conflict="replace" to take the key over',
                                other_run=other_run,
                            )
                            step = await settle("failed", None, error)
                            return ParkResult("conflict", step, other_run)
                        assert cond.key is not None
                        locked = await _lock_signal_waiter(tx, cond.key)
                        if locked is not None:
                            note = error_json(
                                "Replaced",
                                f"the wait on signal {cond.key!r} was taken over by run "
                                f"{lease.run_id!r}",
                                replaced_by=lease.run_id,
                            )
                            await _resolve_wait(
                                tx, locked[0], locked[1], "timed_out", None, note, now
                            )
                found = await _available(tx, lease.run_id, wait.step_key, cond, now)
                if found is not None:
                    output = indexed(index, found) if wait.indexed else found
                    return ParkResult("resolved", await settle("completed", output, None))
            if wait.deadline is not None and wait.deadline <= now:
                status = "completed" if wait.kind == "sleep" else "timed_out"
                return ParkResult("resolved", await settle(status, None, None))
            await settle("waiting", None, None)
            for index, cond in enumerate(conditions):
                await _insert_waiter(
                    tx,
                    lease.run_id,
                    wait.step_key,
                    cond.kind,
                    cond.key,
                    wait.deadline,
                    filing=cond.event.filing if cond.event is not None else None,
                    index=index if wait.indexed else None,
                )
            await tx.run(
                "release_run",
                {
                    "status": "waiting",
                    "due_at": wait.deadline,
                    "waiting_for": wait.waiting_for,
                    "now": now,
                    "run_id": lease.run_id,
                },
            )
            if wait.deadline is not None:
                tx.wake = True  # an idle worker may need an earlier alarm
            return ParkResult("parked")

        return await self._call(body)

    async def send_signal(
        self,
        key: str,
        data: bytes,
        *,
        strict: bool,
        retention_seconds: float,
        sender: StepSender | None = None,
    ) -> SignalOutcome:
        async def body(tx: Tx) -> SignalOutcome:
            await _lock_key(tx, self.schema, key)
            now = time.time()
            if sender is not None:
                await _fence(tx, sender.lease, now)
                if tx.retried_unknown:
                    done = await _stored_step(tx, sender.lease.run_id, sender.step_key)
                    if done is not None and done.status == "completed" and done.output:
                        sent = orjson.loads(done.output)
                        return SignalOutcome(sent["status"], sent["run_id"])
            waiter = await _lock_signal_waiter(tx, key)
            if waiter is not None:
                run_id, step_key, index = waiter
                await _resolve_wait(tx, run_id, step_key, "completed", data, None, now, index)
                outcome = SignalOutcome("delivered", run_id)
            elif strict:
                return SignalOutcome("not_found")
            else:
                await tx.run(
                    "buffer_signal",
                    {"key": key, "data": data, "now": now, "expires_at": now + retention_seconds},
                )
                outcome = SignalOutcome("buffered")
            if sender is not None:
                output = orjson.dumps({"status": outcome.status, "run_id": outcome.run_id})
                step = StepRow(
                    sender.step_key,
                    "send_signal",
                    "completed",
                    output,
                    None,
                    1,
                    sender.started_at,
                    now,
                )
                await tx.run("upsert_step", step_params(sender.lease.run_id, step))
            return outcome

        # A step's send is fenced and memoized in the same transaction, so repeating
        # it after an unknown commit finds the step; a client's send is not.
        return await self._call(body, idempotent=sender is not None)

    async def send_message(self, run_id: str, name: str, data: bytes) -> MessageStatus:
        async def body(tx: Tx) -> MessageStatus:
            # The run's row lock orders this send with the run's own park, which
            # looks for a queued message while it holds the same lock.
            row = await tx.one("lock_run", {"id": run_id})
            if row is None:
                return "not_found"
            if row[3] in ENDED:
                return "finished"
            now = time.time()
            inserted = await tx.one(
                "insert_message", {"run_id": run_id, "name": name, "data": data, "now": now}
            )
            assert inserted is not None
            waiter = await tx.one("message_waiter", {"run_id": run_id, "name": name})
            if waiter is None:
                return "queued"
            step_key, index = waiter
            await tx.run("consume_message", {"seq": inserted[0], "step_key": step_key, "now": now})
            message = message_json(name, data, now)
            await _resolve_wait(tx, run_id, step_key, "completed", message, None, now, index)
            return "delivered"

        # Repeating a send whose commit went unanswered could queue it twice.
        return await self._call(body, idempotent=False)

    async def list_messages(self, run_id: str) -> list[MessageRow]:
        async def body(tx: Tx) -> list[MessageRow]:
            rows = await tx.all("list_messages", {"run_id": run_id})
            return [MessageRow(row[0], bytes(row[1]), row[2], row[3]) for row in rows]

        return await self._call(body)

    async def finish(
        self, lease: Lease, status: str, output: bytes | None, error: bytes | None
    ) -> None:
        params = {
            "status": status,
            "output": output,
            "error": error,
            "now": time.time(),
            "run_id": lease.run_id,
            "token": lease.token,
        }

        if await self._batched("finish_orphan", params) is not None:
            return

        async def body(tx: Tx) -> None:
            now = time.time()
            await _fence(tx, lease, now)
            await tx.run("delete_run_waiters", {"run_id": lease.run_id})
            await tx.run(
                "end_run",
                {
                    "status": status,
                    "output": output,
                    "error": error,
                    "now": now,
                    "run_id": lease.run_id,
                },
            )
            await _notify_parent(tx, self.schema, lease.run_id, now)

        await self._call(body)

    async def honor_cancel(self, lease: Lease) -> None:
        async def body(tx: Tx) -> None:
            now = time.time()
            await _fence(tx, lease, now)
            await _cancel_now(tx, self.schema, lease.run_id, now)

        await self._call(body)

    async def cancel(self, run_id: str, reason: bytes | None) -> RunRow | None:
        async def body(tx: Tx) -> RunRow | None:
            now = time.time()
            row = await tx.one("lock_run", {"id": run_id})
            if row is None:
                return None
            run = run_row(row)
            if run.status in ENDED:
                return run
            await tx.run("request_cancel", {"reason": reason, "now": now, "run_id": run_id})
            await _cancel_or_flag(tx, self.schema, run_id, now, run)
            after = await tx.one("select_run", {"id": run_id})
            assert after is not None
            return run_row(after)

        return await self._call(body)

    async def get_run(self, run_id: str) -> tuple[RunRow, list[StepRow]] | None:
        async def body(tx: Tx) -> tuple[RunRow, list[StepRow]] | None:
            row = await tx.one("select_run", {"id": run_id})
            if row is None:
                return None
            steps = [step_row(r) for r in await tx.all("select_steps", {"id": run_id})]
            return run_row(row), steps

        return await self._call(body)

    async def list_runs(
        self, *, status: str | None, workflow: str | None, limit: int, cursor: int | None
    ) -> list[RunRow]:
        clauses: list[sql.Composable] = []
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            clauses.append(sql.SQL("status = %(status)s"))
            params["status"] = status
        if workflow is not None:
            clauses.append(sql.SQL("workflow = %(workflow)s"))
            params["workflow"] = workflow
        if cursor is not None:
            clauses.append(sql.SQL("seq < %(cursor)s"))
            params["cursor"] = cursor
        where = sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
        query = sql.SQL("SELECT {} FROM runs {} ORDER BY seq DESC LIMIT %(limit)s").format(
            sql.SQL(RUN_COLUMNS), where
        )

        async def body(tx: Tx) -> list[RunRow]:
            cur = await tx.conn.execute(query, params)
            return [run_row(row) for row in await cur.fetchall()]

        return await self._call(body)

    async def list_events(
        self, *, name: str | None, limit: int, cursor: int | None
    ) -> list[EventRow]:
        async def body(tx: Tx) -> list[EventRow]:
            rows = await tx.all("list_events", {"name": name, "cursor": cursor, "limit": limit})
            return [EventRow(row[0], row[1], row[2], bytes(row[3]), row[4]) for row in rows]

        return await self._call(body)

    async def purge_expired(self, events_before: float) -> int:
        async def body(tx: Tx) -> int:
            signals = await tx.run("purge_signals", {"now": time.time()})
            events = await tx.run("purge_events", {"before": events_before})
            return signals + events

        return await self._call(body)
