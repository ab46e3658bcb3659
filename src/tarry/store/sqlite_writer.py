"""sqlite3 behind one writer thread with group commit, and a poller for other processes.

Every operation is a function queued to the writer thread. The thread drains
whatever is waiting, runs it all in one transaction, commits once and hands each
caller its result on the caller's own event loop: at load many runs' step
results share one fsync, and a lone write costs one commit. The batch runs
optimistically without savepoints; should an operation fail, the batch is
rolled back and run again with a savepoint around each operation, so a failure
stays its own and cannot spoil its neighbours.

Other processes' commits are noticed by a poller thread. It sleeps on an
inotify watch of the database's files (``sqlite_watch``): a write by any process
wakes it at once, and it reads ``PRAGMA data_version`` (a cheap counter read)
every ``_SETTLE_STEP`` until the commit shows, for at most ``_SETTLE_FOR``. Beside
the watch, and instead of it where inotify cannot be had, it reads the counter
every ``poll_interval``. An idle poller thus wakes ``1 / poll_interval`` times a
second and costs next to nothing, while a commit from another process reaches the
workers here within about a millisecond of becoming visible.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import ConfigError, StoreError, StoreUnavailable
from .base import WakeListener
from .sqlite_watch import FileWatch

log = logging.getLogger("tarry")

T = TypeVar("T")
_STOP = object()
_SETTLE_STEP = 0.0005
"""Seconds between ``data_version`` reads while a reported write has not yet shown."""
_SETTLE_FOR = 0.05
"""How long after a reported write its commit is looked for (a commit's fsync, a
checkpoint's writes that change nothing): past it, the poller waits for the next."""
_OWN_COMMIT = 0.005
"""Seconds after a commit of this process during which a change is taken for its own."""
_OWN_HOLD = 0.02
"""After a write taken for this process's own, the watch is not read for this long:
a busy process is woken by its own commits at most 1 / _OWN_HOLD times a second,
and another process's commit meanwhile reaches it that much later at most."""


class _Op:
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


_Result = tuple["asyncio.Future[Any]", Any, BaseException | None]


def _settle(results: list[_Result]) -> None:
    """Runs on the caller's loop: hand each caller its result (unless it gave up)."""
    for future, value, error in results:
        if future.done():
            continue
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)


class GroupCommitWriter:
    """The writer thread, its queue, the poller and the wake listeners of one store.

    ``prepare`` runs on the writer's connection before any operation (migrations).
    An operation sets ``wake_pending`` when its commit may make a run due; the
    listeners are called after that commit.
    """

    def __init__(
        self,
        url: str,
        path: str,
        *,
        prepare: Callable[[sqlite3.Connection], None],
        synchronous: str,
        poll_interval: float,
        batch_limit: int,
    ) -> None:
        self.url = url
        self.path = path
        self.prepare = prepare
        self.synchronous = synchronous
        self.poll_interval = poll_interval
        self.batch_limit = batch_limit
        self.wake_pending = False
        self.in_transaction = False
        """The writer is between BEGIN and the end of its COMMIT: a write to the files
        now is this process's own (it reaches the poller before committed_at moves)."""
        self.committed_at = 0.0
        """When this process last committed (monotonic): its own commits wake its
        workers directly, so the watch need not wake them for those too."""
        self._watch_woke = 0.0
        self.lost: str | None = None
        """Why this store can no longer be used (its file went), once it cannot."""
        self._opened: tuple[int, int] | None = None
        self._queue: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        self._listeners: list[WakeListener] = []
        self._writer: threading.Thread | None = None
        self._poller: threading.Thread | None = None
        self._watch: FileWatch | None = None
        self.watching = False
        """Whether the poller is woken by writes (inotify) rather than polling alone."""
        self._closed = threading.Event()
        self._open_lock = threading.Lock()
        self._ready: concurrent.futures.Future[None] | None = None

    # -- lifecycle -----------------------------------------------------------------

    async def open(self) -> None:
        with self._open_lock:
            if self._ready is None:
                self._closed.clear()
                self._ready = concurrent.futures.Future()
                self._writer = threading.Thread(
                    target=self._writer_main,
                    args=(self._ready,),
                    name="tarry-sqlite-writer",
                    daemon=True,
                )
                self._writer.start()
            ready = self._ready
        try:
            await asyncio.wrap_future(ready)
        except BaseException:
            with self._open_lock:
                if self._ready is ready:
                    self._ready = self._writer = None
            raise
        with self._open_lock:
            # An in-memory database has no other process to notice.
            if self._poller is None and not self.in_memory:
                polling = threading.Event()
                self._poller = threading.Thread(
                    target=self._poller_main,
                    args=(polling,),
                    name="tarry-sqlite-poller",
                    daemon=True,
                )
                self._poller.start()
                polling.wait()

    async def close(self) -> None:
        writer = self._writer
        if writer is None:
            return
        self._closed.set()
        watch = self._watch
        if watch is not None:
            watch.interrupt()
        self._queue.put(_STOP)
        await asyncio.to_thread(writer.join)
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join)
        if watch is not None:
            watch.close()
        with self._open_lock:
            self._watch = None
            self._writer = self._poller = None
            self._ready = None

    @property
    def in_memory(self) -> bool:
        return self.path.startswith("file:")

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.in_memory:
                conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, uri=True
                )
            else:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
                conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=30.0
                )
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
                conn.execute("PRAGMA busy_timeout=30000")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open SQLite database {self.url!r}: {exc}") from None
        return conn

    # -- the writer thread -------------------------------------------------------------

    def _identity(self) -> tuple[int, int] | None:
        """Which file the path names now (device, inode); None if there is none."""
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return found.st_dev, found.st_ino

    def _check_file(self) -> None:
        """The file this store opened must still be the one at its path: a database
        deleted or replaced under a running process would otherwise go on being
        written, unseen by every process that opens the path afterwards."""
        if self.in_memory or self.lost is not None or self._identity() == self._opened:
            return
        self.lost = (
            f"the SQLite database file {self.path!r} was deleted or replaced while this "
            "process had it open; nothing more is written to the old file. Restore the "
            "file, or restart the process to use the new one"
        )
        log.error("tarry: %s", self.lost)
        self.wake()  # let every worker see the error now rather than at its next alarm

    def _writer_main(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            conn = self._connect()
            # Only once the file is known to be tarry's (or new) is it switched to
            # WAL, a change written into the file's header.
            self.prepare(conn)
            if not self.in_memory:
                # A read-only file keeps its mode: it can still be read.
                with contextlib.suppress(sqlite3.OperationalError):
                    conn.execute("PRAGMA journal_mode=WAL")
        except BaseException as exc:
            ready.set_exception(exc)
            return
        self._opened = self._identity()
        ready.set_result(None)
        get, get_nowait = self._queue.get, self._queue.get_nowait
        stopping = False
        while not stopping:
            first = get()
            if first is _STOP:
                break
            batch = [first]
            while len(batch) < self.batch_limit:
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._run_batch(conn, batch)  # type: ignore[arg-type]
        conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        # An operation whose caller has already given up (cancelled) is not run.
        batch = [op for op in batch if not op.future.cancelled()]
        if not batch:
            return
        self.in_transaction = True
        try:
            # Optimistic first: one transaction, no savepoints. Should an operation
            # fail (a lost lease, say), the batch is rolled back and run again with a
            # savepoint around each operation, so the failure stays its own.
            results = self._transaction(conn, batch, isolate=len(batch) == 1)
            if results is None:
                results = self._transaction(conn, batch, isolate=True)
            assert results is not None
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failure = self.failure(exc)
            results = [(op, None, failure) for op in batch]
            self.wake_pending = False
        finally:
            self.in_transaction = False
        if self.wake_pending:
            self.wake_pending = False
            self.wake()
        by_loop: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
        for op, value, error in results:
            by_loop.setdefault(op.loop, []).append((op.future, value, error))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(_settle, settled)

    def _transaction(
        self, conn: sqlite3.Connection, batch: list[_Op], *, isolate: bool
    ) -> list[tuple[_Op, Any, BaseException | None]] | None:
        """Run the batch in one transaction. Without ``isolate``, the first failing
        operation rolls everything back and None is returned."""
        results: list[tuple[_Op, Any, BaseException | None]] = []
        # Readers need no write lock: a batch of reads goes on beside another
        # process's writer, and on a file this process may not write.
        conn.execute("BEGIN" if all(op.reads for op in batch) else "BEGIN IMMEDIATE")
        for op in batch:
            if isolate and len(batch) > 1:
                conn.execute("SAVEPOINT op")
            try:
                value = op.fn(conn)
            except Exception as exc:
                if not isolate:
                    conn.execute("ROLLBACK")
                    return None
                if len(batch) > 1:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                results.append((op, None, self.failure(exc)))
                continue
            if isolate and len(batch) > 1:
                conn.execute("RELEASE op")
            results.append((op, value, None))
        if len(batch) == 1 and results[0][2] is not None:
            conn.execute("ROLLBACK")
        else:
            conn.execute("COMMIT")
            self.committed_at = time.monotonic()
        return results

    def failure(self, exc: Exception) -> Exception:
        """What the caller of a failed operation gets: tarry's own errors as they are,
        SQLite's said in tarry's words (busy past its timeout: unavailable)."""
        if not isinstance(exc, sqlite3.Error):
            return exc
        message = f"SQLite transaction on {self.url!r} failed: {exc}"
        if isinstance(exc, sqlite3.OperationalError) and any(
            word in str(exc) for word in ("locked", "busy", "disk I/O", "unable to open")
        ):
            return StoreUnavailable(message)
        return StoreError(message)

    async def call(self, fn: Callable[[sqlite3.Connection], T], *, reads: bool = False) -> T:
        if self._writer is None:
            raise StoreError(f"the store {self.url!r} is not open")
        if self.lost is not None:
            raise StoreError(self.lost)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Op(fn, loop, future, reads))
        return await future

    # -- wake-ups --------------------------------------------------------------------

    def add_wake_listener(self, listener: WakeListener) -> None:
        self._listeners.append(listener)

    def remove_wake_listener(self, listener: WakeListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def wake(self) -> None:
        for listener in list(self._listeners):
            listener()

    def _own_activity(self, now: float) -> bool:
        """Whether a change seen ``now`` is most likely this process's own commit."""
        return self.in_transaction or now - self.committed_at < _OWN_COMMIT

    def _poller_main(self, ready: threading.Event) -> None:
        # The first reading is taken before open() returns, and readings go on while
        # nobody listens: a commit by another process is never folded into a baseline.
        try:
            conn = self._connect()
            last = conn.execute("PRAGMA data_version").fetchone()[0]
        except (ConfigError, sqlite3.Error):
            ready.set()
            return
        # Watched after that first reading, so a write before it is in the baseline.
        watch = self._watch = FileWatch.open([self.path, self.path + "-wal"])
        self.watching = watch is not None
        ready.set()
        expect_until = 0.0  # monotonic time until which a reported write may still show
        deferred = 0.0  # a wake held back (see below) is due then
        held_until = 0.0  # the watch is not read before then (see below)
        try:
            while True:
                hold = held_until - time.monotonic()
                if hold > 0 and self._closed.wait(hold):
                    break
                settling = expect_until > time.monotonic()
                timeout = _SETTLE_STEP if settling else self.poll_interval
                if deferred:
                    timeout = max(0.0, min(timeout, deferred - time.monotonic()))
                if watch is None:
                    if self._closed.wait(timeout):
                        break
                else:
                    if watch.wait(timeout):
                        now = time.monotonic()
                        # A write just after this process's own commit is most likely
                        # that commit: read the counter once, do not settle on it (a
                        # busy worker would poll all the time); another process's
                        # commit meanwhile is found by the next poll.
                        if not self._own_activity(now):
                            expect_until = now + _SETTLE_FOR
                        else:
                            # While this process commits, its own writes would wake
                            # this thread after every commit: let them pile up (the
                            # kernel folds them into one event) for _OWN_HOLD.
                            held_until = now + _OWN_HOLD
                    if self._closed.is_set():
                        break
                self._check_file()
                try:
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error:
                    continue
                if version != last:
                    last = version
                    expect_until = 0.0
                    now = time.monotonic()
                    # Right after a commit of this process the change is likely its
                    # own, which woke its workers already: then wake them at most
                    # once per poll interval, not after every commit of a busy worker.
                    own = self._own_activity(now)
                    if not own or now - self._watch_woke >= _SETTLE_FOR:
                        deferred = 0.0
                        self._watch_woke = now
                        if self._listeners:
                            self.wake()
                    elif not deferred:  # held back, not dropped: it may be another's
                        deferred = self._watch_woke + _SETTLE_FOR
                if deferred and time.monotonic() >= deferred:
                    deferred = 0.0
                    self._watch_woke = time.monotonic()
                    if self._listeners:
                        self.wake()
        finally:
            conn.close()  # the watch is closed by close(), once this thread has ended
