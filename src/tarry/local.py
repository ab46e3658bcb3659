"""What this process learns about its runs before the store could tell it.

The store is the truth every process shares, but two facts are known sooner in
the process where they happen:

- a run executing here was asked to cancel here (``App.cancel``): its
  execution must start no further step, without waiting for its next store
  write to report the request;
- a run ended here (a worker of this App made its final commit, or
  ``App.cancel`` ended it): ``App.result`` waiting in this process can return
  at once instead of at its next poll;
- a worker of this App runs on the caller's loop: ``App.start`` may hand it the
  new run at once, and a signal or message the run it wakes, if that run sleeps
  in the worker (``worker_starts``).

The App owns one ``Local`` and hands it to its workers. Every method may be
called from any thread: client calls run on the caller's loop or the App's
portal thread, executions on the worker's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from .store.base import Handoff, Lease, RunRow

Callback = Callable[[], None]


class Taker(Protocol):
    """A worker that may take a start made on its loop (``worker_starts``)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None: ...

    def take(self, run_id: str, workflow: str) -> Lease | None: ...

    def adopt(self, run: RunRow | None, lease: Lease) -> None: ...

    def offer_wake(self) -> Handoff | None: ...

    def adopt_wake(self, handoff: Handoff) -> None: ...


_REMEMBERED_CANCELS = 1024


class Local:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executing: dict[str, list[Callback]] = {}
        self._on_end: dict[str, list[Callback]] = {}
        # Cancels asked here of runs that were leased when asked. An execution that
        # registers after the request (its claim committed first, but it had not
        # registered yet) still hears it. A request is never withdrawn, so an entry
        # kept too long is harmless; the bound only caps the memory.
        self._cancelled: OrderedDict[str, None] = OrderedDict()
        self._takers: list[Taker] = []
        self.queued = 0
        """Starts made here and queued for a claim (``note_queued``), a count."""

    # -- workers that take starts at once ------------------------------------------

    def add_taker(self, worker: Taker) -> None:
        with self._lock:
            self._takers.append(worker)

    def remove_taker(self, worker: Taker) -> None:
        with self._lock:
            if worker in self._takers:
                self._takers.remove(worker)

    def note_queued(self) -> None:
        """A start made here was queued for a claim: a worker takes no start after it
        until a claim of its own has begun since (the queued run is not passed)."""
        with self._lock:
            self.queued += 1

    def taker(self, loop: asyncio.AbstractEventLoop) -> Taker | None:
        """A worker running on ``loop``, which may take a start made there."""
        with self._lock:
            for worker in self._takers:
                if worker.loop is loop:
                    return worker
        return None

    # -- runs executing here --------------------------------------------------------

    def executing(self, run_id: str, cancel: Callback) -> Callback:
        """Record that ``run_id`` executes here: ``cancel`` is called when a cancel of
        the run is asked in this process (at once, if it already was). Returns the
        function that removes the record when the execution is over."""
        with self._lock:
            self._executing.setdefault(run_id, []).append(cancel)
            asked = run_id in self._cancelled
        if asked:
            cancel()

        def remove() -> None:
            with self._lock:
                _discard(self._executing, run_id, cancel)

        return remove

    def executing_count(self) -> int:
        """How many runs execute here now: the worker slots in use (``/metrics``)."""
        with self._lock:
            return len(self._executing)

    def cancel(self, run_id: str) -> None:
        """A cancel of the leased run ``run_id`` is stored: tell its executions here."""
        with self._lock:
            self._cancelled[run_id] = None
            self._cancelled.move_to_end(run_id)
            while len(self._cancelled) > _REMEMBERED_CANCELS:
                self._cancelled.popitem(last=False)
            callbacks = list(self._executing.get(run_id, ()))
        for callback in callbacks:
            callback()

    # -- runs ending ----------------------------------------------------------------

    def on_end(self, run_id: str, callback: Callback) -> Callback:
        """Call ``callback`` (from any thread) each time ``run_id`` is seen to end here,
        until the returned function removes it."""
        with self._lock:
            self._on_end.setdefault(run_id, []).append(callback)

        def remove() -> None:
            with self._lock:
                _discard(self._on_end, run_id, callback)

        return remove

    def watching(self, run_id: str) -> int:
        """How many callbacks wait for ``run_id`` to end."""
        with self._lock:
            return len(self._on_end.get(run_id, ()))

    def ended(self, run_id: str) -> None:
        """``run_id`` ended by a commit made in this process."""
        with self._lock:
            self._cancelled.pop(run_id, None)
            callbacks = list(self._on_end.get(run_id, ()))
        for callback in callbacks:
            callback()


def _discard(table: dict[str, list[Callback]], run_id: str, callback: Callback) -> None:
    callbacks = table.get(run_id)
    if callbacks is None:
        return
    for i, registered in enumerate(callbacks):
        if registered is callback:
            del callbacks[i]
            break
    if not callbacks:
        del table[run_id]
