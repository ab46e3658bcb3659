"""The shared store: the store core on PostgreSQL through psycopg 3, for many workers
on many machines.

What differs from SQLite is how concurrent transactions of other processes are
kept apart, and that is all this adapter and its SQL hold:

- Claims take due runs with ``FOR UPDATE SKIP LOCKED``, so workers never wait
  for each other and never claim the same run; a capped workflow is counted
  under a transaction-scoped advisory lock on its name.
- The core's locks (``Tx.lock``) are transaction-scoped advisory locks: on a
  signal key (a wait registering on it, a sender delivering or buffering), on
  an event name (shared by senders, alone for a wait's lookback), on a child
  run's id (a wait on it, and its end).
- Rows are locked run first, then that run's waiters, in every transaction, so
  deliveries, timeouts resolved by a claim and cancellations queue behind one
  another instead of deadlocking.
- A commit that makes a run due sends ``NOTIFY`` on the schema's channel in the
  same transaction; every store LISTENs there and wakes its workers.
- The hot writes have one-statement forms, group-committed with their peers
  (``postgres_batch``): a plain start, a claim of runs that need only a lease,
  a step's result, a park on one signal key, the end of a run no parent waits
  for. Whatever they cannot decide alone (a cancel pending, a parent to resume, a
  wait answered at once) falls to the core.

Connection errors are retried with backoff for ``retry_seconds``, and so are
transactions PostgreSQL rolled back (a deadlock it broke, a serialization
failure). A failure before COMMIT is always safe to retry. A failure during
COMMIT leaves the outcome unknown: fenced writes are retried (the lease token
makes them idempotent), ``create_run`` is ``ON CONFLICT DO NOTHING``, but a
client's ``send_signal`` could buffer twice and a ``send_message`` could queue
twice, so those raise ``StoreError`` instead (the core marks them).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Collection, Mapping, Sequence
from functools import partial
from typing import Any

from ..clock import Clock, SystemClock
from ..errors import StoreError
from ..models import EndStatus
from .base import (
    ClaimBatch,
    ClaimedRun,
    Lease,
    NewRun,
    ParkResult,
    SignalWait,
    StepRow,
    WaitSpec,
    WakeListener,
)
from .core import Body, CoreStore, T, claims, ends, fence, port
from .flow_records import FlowRules
from .postgres_io import IOLoop
from .postgres_tx import Tx
from .postgres_url import masked, parse_url
from .rows import run_row, step_params


class PostgresStore(CoreStore):
    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        pool_size: int = 10,
        retry_seconds: float = 30.0,
    ) -> None:
        # Each store follows its server's clock (IOLoop), so it keeps a system clock
        # of its own rather than moving one it was handed.
        super().__init__(
            SystemClock() if clock is None or isinstance(clock, SystemClock) else clock
        )
        self.url = url
        self._conninfo, self.schema, _ = parse_url(url)
        self.pool_size = pool_size
        self.retry_seconds = retry_seconds
        self._listeners: list[WakeListener] = []
        self._lock = threading.Lock()
        self._io: IOLoop | None = None
        self._ready: concurrent.futures.Future[None] | None = None
        self._started: IOLoop | None = None
        """``_io`` once seen started: every operation asks, and a concurrent future's
        ``done`` and ``exception`` each take its lock."""

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
                    clock=self.clock,
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
                    self._ready = self._io = self._started = None
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
            self._io = self._ready = self._started = None
        if io is None or ready is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(ready)
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(io.stop(), io.loop))
        io.halt()
        await asyncio.to_thread(io.thread.join)

    def _open_io(self) -> IOLoop:
        io = self._started
        if io is not None:
            return io
        io, ready = self._io, self._ready
        if io is None or ready is None or not ready.done() or ready.exception() is not None:
            raise StoreError(f"the store {masked(self.url)!r} is not open")
        with self._lock:
            if self._io is io:  # not closed meanwhile
                self._started = io
        return io

    async def _transact(self, body: Body[T], *, idempotent: bool = True) -> T:
        return await self._open_io().call(body, idempotent=idempotent)

    async def _batched(self, query: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """One of the hot single-statement writes, group-committed with its peers."""
        return await self._open_io().batcher().submit(query, params)

    # -- wake-ups --------------------------------------------------------------------

    def add_wake_listener(self, listener: WakeListener) -> None:
        self._listeners.append(listener)

    def remove_wake_listener(self, listener: WakeListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    async def wake_others(self) -> None:
        # A transaction that only asks for a wake-up sends only the NOTIFY.
        await self._transact(_wake_only)

    # -- the hot paths in one statement ------------------------------------------------

    async def create_run(self, run: NewRun) -> tuple[str, bool]:
        io = self._open_io()
        params = {
            "id": run.id,
            "workflow": run.workflow,
            "payload": run.payload,
            "trigger": run.trigger,
            "parent": run.parent,
            "version": run.version,
            "now": self.clock.now(),
            "trace": run.trace,
            "channel": io.channel,
        }
        if run.priority or run.due_at is not None:  # columns the plain start leaves out
            return await super().create_run(run)
        row = await self._batched("insert_plain_run", params)
        assert row is not None
        if row[0]:  # else the workflow has cancel_on conditions or flow rules: the core's path
            return run.id, bool(row[1])
        return await super().create_run(run)

    async def save_step(self, lease: Lease, step: StepRow) -> bool:
        if fence.is_failed_attempt(step):  # its attempt is kept too: the full path
            return await super().save_step(lease, step)
        # The lease check and the write in one statement, grouped with other runs'
        # step writes into one transaction when several are ready at once.
        row = await self._batched("save_step", {**step_params(lease.run_id, step),
                                                "token": lease.token})  # fmt: skip
        if row is None:
            raise fence.lease_lost(lease)
        return bool(row[0])

    async def park(self, lease: Lease, wait: WaitSpec) -> ParkResult:
        cond = wait.conditions[0] if len(wait.conditions) == 1 else None
        if (
            not isinstance(cond, SignalWait)
            or cond.schema is not None  # a typed wait: its waiter keeps the schema
            or wait.need is not None
            or wait.indexed
        ):
            return await super().park(lease, wait)
        # The common park (one signal key, nothing there yet) in one statement after the
        # key's lock, grouped with other runs' writes; anything else takes the full path.
        io = self._open_io()
        now = self.clock.now()
        params = {
            "run_id": lease.run_id, "token": lease.token, "key": cond.key,
            "lock": f"{self.schema}:signal:{cond.key}", "step_key": wait.step_key,
            "kind": wait.kind, "deadline": wait.deadline, "waiting_for": wait.waiting_for,
            "started_at": wait.started_at or now, "pos": wait.pos, "spec": wait.spec,
            "due": float("inf") if wait.deadline is None else wait.deadline, "now": now,
            "channel": io.channel,
        }  # fmt: skip
        row = await self._batched("park_signal", params)
        if row is not None and row[0]:
            return ParkResult("parked")
        return await super().park(lease, wait)

    async def finish(
        self, lease: Lease, status: EndStatus, output: bytes | None, error: bytes | None
    ) -> EndStatus:
        params = ends.end_params(lease, status, output, error, self.clock.now())
        if await self._batched("finish_orphan", params) is not None:
            return status
        # Not the plain end: straight to the fenced one, without trying this again.
        return await self._transact(partial(ends.finish_fenced, lease=lease, params=params))

    async def claim(
        self,
        workflows: Sequence[str],
        limit: int,
        lease_seconds: float,
        caps: Mapping[str, int] | None = None,
        skip_steps: Collection[str] = (),
        flows: Mapping[str, FlowRules] | None = None,
    ) -> ClaimBatch:
        io = self._open_io()
        names = list(dict.fromkeys(workflows))
        full = partial(
            claims.claim, workflows=names, lease_seconds=lease_seconds, caps=caps,
            skip_steps=skip_steps, flows=flows,
        )  # fmt: skip

        async def give_back(batch: ClaimBatch) -> None:
            # The worker stopped waiting for this claim: hand the runs back now
            # rather than leave them leased to nobody until the lease expires.
            for claimed in batch.runs:
                with contextlib.suppress(Exception):
                    await io.call(partial(ends.release, lease=claimed.lease), idempotent=True)

        if any(name in names for name in [*(caps or {}), *(flows or {})]):
            return await io.call(partial(full, limit=limit), idempotent=True, abandoned=give_back)

        async def give_plain_back(result: tuple[ClaimBatch, bool]) -> None:
            await give_back(result[0])

        batch, special = await io.call(
            partial(_claim_plain, workflows=names, limit=limit, lease_seconds=lease_seconds,
                    skip_steps=skip_steps),
            idempotent=True, abandoned=give_plain_back, single=True,
        )  # fmt: skip
        if not special or len(batch.runs) >= limit:
            return batch
        rest = await io.call(
            partial(full, limit=limit - len(batch.runs)), idempotent=True, abandoned=give_back
        )
        return ClaimBatch(batch.runs + rest.runs, rest.next_due)


async def _wake_only(tx: port.Tx) -> None:
    tx.wake()


async def _claim_plain(
    tx: Tx, workflows: list[str], limit: int, lease_seconds: float, skip_steps: Collection[str]
) -> tuple[ClaimBatch, bool]:
    """The common claim in one statement (lease the due runs that need nothing but a
    lease, and say when the next is due), then their steps: two round trips instead
    of a transaction of six. Whether runs needing the full claim (a timed-out wait,
    a requested cancellation) are due too."""
    rows = await tx.all(
        "claim_plain",
        {"now": tx.now, "workflows": workflows, "limit": limit,
         "lease_until": tx.now + lease_seconds},
    )  # fmt: skip
    next_due, special = rows[0][-2], rows[0][-1]
    leased = [row for row in rows if row[1] is not None]
    steps = await claims.steps_of(tx, [row[1] for row in leased if row[1] not in skip_steps])
    summaries = await claims.summaries_of(tx, [row[1] for row in leased if row[1] in skip_steps])
    claimed = [
        ClaimedRun(run_row(row[:-4]), steps[row[1]], Lease(row[1], row[-4]), due_at=row[-3],
                   summary=summaries.get(row[1]))
        for row in leased
    ]  # fmt: skip
    return ClaimBatch(claimed, next_due), bool(special)
