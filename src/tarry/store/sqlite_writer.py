"""sqlite3 on one connection with group commit, a writer thread, and a poller for
other processes.

A worker's brief writes are committed on the caller's event loop, under the
connection's lock (``sqlite_inline``). Every other operation is a function queued
to the writer thread. The thread drains whatever is waiting, runs it all in one
transaction, commits once and hands each caller its result on the caller's own
event loop: at load many operations share one fsync, and a lone one costs one
commit. While busy (its last batch was large) the thread waits a moment
(``_GATHER_FOR``) for more before it commits a small batch. Either way a batch
runs optimistically without savepoints; should an operation fail, the batch is
rolled back and run again with a savepoint around each operation, so a failure
stays its own and cannot spoil its neighbours.

Other processes' commits are noticed by a poller thread (``sqlite_poller``). An
idle poller wakes ``1 / poll_interval`` times a second and costs next to nothing,
while a commit from another process reaches the workers here within about a
millisecond of becoming visible.
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
from collections.abc import Callable
from typing import TypeVar

from ..errors import ConfigError, StoreError, StoreUnavailable
from .base import WakeListener
from .sqlite_inline import BUSY_MS, Handoff, InlineBatches, Op, Result, settle
from .sqlite_poller import CommitPoller
from .sqlite_watch import FileWatch

log = logging.getLogger("tarry")


def _bind_as_they_are() -> None:
    """Identity adapters for ``None`` and ``bytes``. sqlite3 binds int, float, str and
    bytearray directly; any other value is first looked up in its adapter registry
    and then asked for ``__adapt__`` and ``__conform__``, two failed attribute
    lookups, per parameter per statement: a step's row binds several. With an
    adapter registered the lookup is answered at once, and the value bound is the
    same. The registry is the sqlite3 module's, shared by the process: an adapter an
    application registered for either type is kept."""
    for kind, same in ((type(None), {None: None}.get), (bytes, bytes)):
        sqlite3.adapters.setdefault((kind, sqlite3.PrepareProtocol), same)


_bind_as_they_are()

T = TypeVar("T")
_STOP = object()
_GATHER_ENOUGH = 8
"""A batch this large counts as busy: the next one waits a moment to fill."""
_GATHER_FOR = 0.0003
"""How long a busy writer waits for more work before it commits a small batch."""


class GroupCommitWriter(CommitPoller, InlineBatches):
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
        """The writer is between BEGIN IMMEDIATE and the end of its COMMIT: a write to
        the files now is this process's own (no other process can commit meanwhile).
        Any other write may be another process's commit, even one just after this
        process's own, and the poller settles on it."""
        self._watch_woke = 0.0
        self.lost: str | None = None
        """Why this store can no longer be used (its file went), once it cannot."""
        self._opened: tuple[int, int] | None = None
        self._queue: queue.SimpleQueue[Op | Handoff | object] = queue.SimpleQueue()
        self._conn: sqlite3.Connection | None = None
        """The one connection, once open: the writer thread's, and every loop's under ``_lock``."""
        self._lock = threading.Lock()
        self._busy_ms = BUSY_MS
        self._init_inline()
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
                    self.path,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=BUSY_MS / 1000,
                )
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
                conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
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
        self._conn = conn
        ready.set_result(None)
        get, get_nowait = self._queue.get, self._queue.get_nowait
        stopping = False
        busy = False
        while not stopping:
            first = get()
            if first is _STOP:
                break
            batch = [first]
            gathered = not busy
            while len(batch) < self.batch_limit:
                try:
                    item = get_nowait()
                except queue.Empty:
                    if gathered or len(batch) >= _GATHER_ENOUGH:
                        break
                    # Busy: the runs whose writes just committed are about to send
                    # their next ones; a moment's wait puts them in this commit.
                    gathered = True
                    try:
                        item = get(timeout=_GATHER_FOR)
                    except queue.Empty:
                        break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            busy = len(batch) >= _GATHER_ENOUGH
            self._run_batch(conn, batch)  # type: ignore[arg-type]
        with self._lock:
            self._conn = None
            conn.close()
        # Whatever came after the stop is refused, not left waiting.
        while True:
            try:
                item = get_nowait()
            except queue.Empty:
                break
            self._refuse(item)

    def _refuse(self, item: object) -> None:
        ops = item.ops if isinstance(item, Handoff) else [item] if isinstance(item, Op) else []
        error = StoreError(f"the store {self.url!r} was closed before this write ran")
        self._dispatch([(op, None, error) for op in ops])

    def _run_batch(self, conn: sqlite3.Connection, items: list[Op | Handoff]) -> None:
        batch: list[Op] = []
        handoffs: list[Handoff] = []
        for item in items:
            if isinstance(item, Handoff):
                handoffs.append(item)
                batch.extend(item.ops)
            else:
                batch.append(item)
        with self._lock:
            self._set_busy(conn, BUSY_MS)
            results, woke = self._execute(conn, batch)
        if woke:
            self.wake()
        self._dispatch(results)
        for handoff in handoffs:  # after its results, on the same loop: in order
            with contextlib.suppress(RuntimeError):  # that loop has closed
                handoff.batch.loop.call_soon_threadsafe(self.resume, handoff.batch)

    def _dispatch(self, results: list[Result]) -> None:
        """Hand each result to its caller's loop, one hand-off per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Result]] = {}
        for result in results:
            by_loop.setdefault(result[0].loop, []).append(result)
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(settle, settled)

    def _execute(
        self, conn: sqlite3.Connection, batch: list[Op], *, begun: bool = False
    ) -> tuple[list[Result], bool]:
        """Run the batch (``begun``: its write transaction already begun) and commit;
        each operation's result or error, and whether the commit must wake the
        workers. The caller holds ``_lock``, and wakes them once it has let it go:
        a worker woken sooner would find the connection taken."""
        # An operation whose caller has already given up (cancelled) is not run.
        batch = [op for op in batch if not op.future.cancelled()]
        if not batch:
            if begun:
                conn.execute("ROLLBACK")
            return [], False
        # A batch of reads writes nothing: another process may commit meanwhile.
        self.in_transaction = begun or not all(op.reads for op in batch)
        try:
            # Optimistic first: one transaction, no savepoints. Should an operation
            # fail (a lost lease, say), the batch is rolled back and run again with a
            # savepoint around each operation, so the failure stays its own.
            results = self._transaction(conn, batch, isolate=len(batch) == 1, begun=begun)
            if results is None:
                self._set_busy(conn, BUSY_MS)
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
        woke, self.wake_pending = self.wake_pending, False
        return results, woke

    def _transaction(
        self, conn: sqlite3.Connection, batch: list[Op], *, isolate: bool, begun: bool = False
    ) -> list[Result] | None:
        """Run the batch in one transaction. Without ``isolate``, the first failing
        operation rolls everything back and None is returned."""
        results: list[Result] = []
        if not begun:
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

    def call(
        self, fn: Callable[[sqlite3.Connection], T], *, reads: bool = False, brief: bool = False
    ) -> asyncio.Future[T]:
        """Run ``fn`` on the connection in a transaction shared with other operations;
        its result, in a future of the caller's loop. ``brief``: a small write of a
        run's own, committed on this event loop (``sqlite_inline``) rather than by the
        writer thread. The operation is queued now, not when the future is awaited (a
        plain function: a coroutine per write is measurable on the hot path)."""
        if self._writer is None:
            raise StoreError(f"the store {self.url!r} is not open")
        if self.lost is not None:
            raise StoreError(self.lost)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        op = Op(fn, loop, future, reads)
        if brief:
            self._add_brief(op)
        else:
            self._queue.put(op)
        return future

    # -- wake-ups --------------------------------------------------------------------

    def add_wake_listener(self, listener: WakeListener) -> None:
        self._listeners.append(listener)

    def remove_wake_listener(self, listener: WakeListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def wake(self) -> None:
        for listener in list(self._listeners):
            listener()
