"""Brief writes, those that touch one run, committed on the caller's event loop
rather than by the writer thread.

A worker's hot path is a few small writes per run: its start, its claim, each
step's result, its end (and a signal or a message that wakes it). Sent to the
writer thread, each write's statements ran while the event loop ran the
handlers, and the two threads handed the interpreter's lock to each other at
every statement (sqlite3 lets it go for every step of a statement): the
handoffs cost more than the statements. So these writes are gathered per event
loop instead, as they are made during one turn of the loop, and the next turn
runs them in one transaction right there, with one commit (group commit as
before, with no other thread involved). The commit's fsync is waited for on the
loop: it is the loop's own writes' wait in any case.

The connection is the writer thread's, taken under its lock: the thread still
runs every other operation (reads, a fan-out to many waiters, a purge), and a
batch that finds it at work is handed to it, in order, as is a batch that finds
another process holding the file's write lock (the loop never sleeps on SQLite's
busy timeout). One batch per loop is under way at a time, so a loop's writes
commit in the order they were made.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ..errors import StoreError

BUSY_MS = 30_000
"""The busy timeout of the writer thread, which may wait for another process."""


class Op:
    """One queued operation and the caller's future, on the caller's own loop."""

    __slots__ = ("fn", "future", "loop", "reads")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        reads: bool,
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future = future
        self.reads = reads
        """Only reads: a batch of nothing else takes no write lock."""


Result = tuple[Op, Any, BaseException | None]


def settle(results: list[Result]) -> None:
    """Runs on the callers' loop: hand each caller its result (unless it gave up)."""
    for op, value, error in results:
        if op.future.done():
            continue
        if error is None:
            op.future.set_result(value)
        else:
            op.future.set_exception(error)


class LoopBatch:
    """The brief writes one event loop has made and not yet committed."""

    __slots__ = ("loop", "pending", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: list[Op] = []
        self.scheduled = False
        """A flush is due on the loop, or a batch of it is with the writer thread."""


class Handoff:
    """A loop's batch handed to the writer thread; the loop's next batch waits for it."""

    __slots__ = ("batch", "ops")

    def __init__(self, batch: LoopBatch, ops: list[Op]) -> None:
        self.batch = batch
        self.ops = ops


class InlineBatches:
    """The loop side of ``GroupCommitWriter`` (see the module); a mixin."""

    url: str
    batch_limit: int
    in_transaction: bool
    _conn: sqlite3.Connection | None
    _lock: threading.Lock
    _busy_ms: int
    _queue: Any
    _closed: threading.Event
    _execute: Callable[..., tuple[list[Result], bool]]
    _refuse: Callable[[object], None]
    wake: Callable[[], None]

    def _init_inline(self) -> None:
        self._loop_batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopBatch] = (
            weakref.WeakKeyDictionary()
        )
        self._loop_batches_lock = threading.Lock()
        self._recent_batch: LoopBatch | None = None
        """The batch of the loop that made the last brief write: most often the next
        one's (a weak-keyed lookup per write is measurable)."""

    def _add_brief(self, op: Op) -> None:
        batch = self._recent_batch  # one read: another thread may replace it meanwhile
        if batch is None or batch.loop is not op.loop:
            with self._loop_batches_lock:
                batch = self._loop_batches.setdefault(op.loop, LoopBatch(op.loop))
            self._recent_batch = batch
        batch.pending.append(op)
        if not batch.scheduled:
            batch.scheduled = True
            # Next turn: the writes the rest of this turn makes join the same commit.
            op.loop.call_soon(self._flush, batch)

    def _set_busy(self, conn: sqlite3.Connection, ms: int) -> None:
        if self._busy_ms != ms:
            conn.execute(f"PRAGMA busy_timeout={ms}")
            self._busy_ms = ms

    def _flush(self, batch: LoopBatch) -> None:
        ops = batch.pending[: self.batch_limit]
        del batch.pending[: len(ops)]
        conn = self._conn
        if conn is None or not self._lock.acquire(blocking=False):
            self._hand_off(batch, ops)  # the thread is at work: behind it, in order
            return
        try:
            ran = self._run_here(conn, ops)
        except BaseException:
            self.resume(batch)  # the loop's later writes are not left waiting
            raise
        finally:
            self._lock.release()
        if ran is None:  # another process holds the write lock
            self._hand_off(batch, ops)
            return
        results, woke = ran
        if woke:
            self.wake()
        settle(results)
        self.resume(batch)

    def _run_here(
        self, conn: sqlite3.Connection, ops: list[Op]
    ) -> tuple[list[Result], bool] | None:
        """The batch in one transaction on this thread (as ``_execute``); None if
        another process holds the write lock (nothing was run)."""
        try:
            self._set_busy(conn, 0)
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return None
        try:
            return self._execute(conn, ops, begun=True)
        except BaseException:
            # Interrupted (KeyboardInterrupt in the loop's thread): leave the connection
            # clean for the thread, and no caller waiting on a batch that will not end.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self.in_transaction = False
            for op in ops:
                if not op.future.done():
                    op.future.set_exception(
                        StoreError(f"a write to {self.url!r} was interrupted before it ended")
                    )
            raise

    def _hand_off(self, batch: LoopBatch, ops: list[Op]) -> None:
        if self._closed.is_set():  # the thread has stopped, or is stopping
            self._refuse(Handoff(batch, ops))
            return
        self._queue.put(Handoff(batch, ops))

    def resume(self, batch: LoopBatch) -> None:
        """On the batch's loop: its last batch has ended; the next may go."""
        if batch.pending:
            batch.loop.call_soon(self._flush, batch)
        else:
            batch.scheduled = False
