"""The claim loop: lease due runs, execute them, renew leases, sleep until woken.

An idle worker sleeps until the earliest ``due_at`` among its workflows' runs
or until the store calls its wake listener (an in-process commit at once;
another process's commit via the store's own mechanism), never on a fixed
polling interval of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from .errors import StoreError
from .executor import Execution, execute
from .store.base import ClaimedRun, Store

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("tarry")

_PURGE_EVERY = 300.0
_MIN_PAUSE = 0.002
_BACKOFF_FIRST = 1.0
_BACKOFF_CAP = 10.0


class Worker:
    def __init__(self, app: App, *, concurrency: int = 32) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        self.app = app
        self.concurrency = concurrency
        self._active: dict[str, tuple[asyncio.Task[None], Execution]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None

    def _on_wake(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(self._wake.set)

    def stop(self) -> None:
        """Ask the loop to stop claiming and return; safe from any thread."""
        self._stopping = True
        self._on_wake()

    async def run(self) -> None:
        store = await self.app._open()
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        workflows = list(self.app.workflows)
        caps = {w.id: w.concurrency for w in self.app.workflows.values() if w.concurrency}
        await store.bind_loop()
        store.add_wake_listener(self._on_wake)
        heartbeat = asyncio.create_task(self._heartbeat(store), name="tarry-heartbeat")
        next_purge = 0.0
        backoff = _BACKOFF_FIRST
        try:
            while not self._stopping:
                self._wake.clear()
                timeout: float | None = None
                free = self.concurrency - len(self._active)
                try:
                    now = time.time()
                    if now >= next_purge:
                        await store.purge_expired(now - self.app.event_retention)
                        next_purge = now + _PURGE_EVERY
                    if free > 0 and workflows:
                        batch = await store.claim(workflows, free, self.app.lease, caps)
                        for claimed in batch.runs:
                            self._start(store, claimed)
                        if len(batch.runs) == free:
                            continue  # there may be more due; claim again when a slot frees
                        if batch.next_due is not None:
                            # Due but not claimed (locked by another worker's claim):
                            # look again shortly rather than spin.
                            timeout = max(_MIN_PAUSE, batch.next_due - time.time())
                    backoff = _BACKOFF_FIRST
                except StoreError as exc:
                    log.warning("worker: the store failed (%s); retrying in %.1f s", exc, backoff)
                    timeout, backoff = backoff, min(backoff * 2, _BACKOFF_CAP)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            store.remove_wake_listener(self._on_wake)
            heartbeat.cancel()
            await self._shutdown(store)
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            if self._threads is not None:
                self._threads.shutdown(wait=False, cancel_futures=True)
                self._threads = None
            await store.unbind_loop()

    def _start(self, store: Store, claimed: ClaimedRun) -> None:
        workflow = self.app.workflows[claimed.run.workflow]
        execution = Execution(self.app, store, workflow, claimed)
        if not workflow.is_async and self._threads is None:
            self._threads = concurrent.futures.ThreadPoolExecutor(
                self.concurrency, thread_name_prefix="tarry-handler"
            )
        threads = self._threads or _NO_THREADS
        task = asyncio.create_task(execute(execution, workflow.fn, workflow.is_async, threads))
        self._active[claimed.run.id] = (task, execution)
        run_id = claimed.run.id
        task.add_done_callback(lambda _task: self._done(run_id))

    def _done(self, run_id: str) -> None:
        self._active.pop(run_id, None)
        self._wake.set()

    async def _heartbeat(self, store: Store) -> None:
        interval = self.app.lease / 3
        while True:
            await asyncio.sleep(interval)
            if not self._active:
                continue
            leases = [execution.lease for _, execution in self._active.values()]
            try:
                status = await store.renew(leases, self.app.lease)
            except Exception:
                log.warning("lease renewal failed; retrying", exc_info=True)
                continue
            for run_id in status.lost:
                entry = self._active.get(run_id)
                if entry is not None and not entry[1].releasing:
                    log.warning("run %s: lease lost; stopping this attempt", run_id)
                    entry[0].cancel()
            for run_id in status.cancel_requested:
                entry = self._active.get(run_id)
                if entry is not None:
                    entry[1].cancel_requested = True

    async def _shutdown(self, store: Store) -> None:
        """Stop executions still in flight and hand their runs back at once, rather
        than leaving them for the lease to expire."""
        entries = list(self._active.values())
        for task, _ in entries:
            task.cancel()
        for task, execution in entries:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(Exception):
                await store.release(execution.lease)
        self._active.clear()


class _NoThreads(concurrent.futures.Executor):
    """Stands in for the handler thread pool when only async handlers run."""


_NO_THREADS = _NoThreads()
