"""The threads that run step functions written as plain ``def``.

``loop.run_in_executor`` hands each call to a ``ThreadPoolExecutor`` and each
result back through its own ``call_soon_threadsafe``: a concurrent future, an
asyncio future chained to it, and one write to the loop's wake-up pipe per step.
On a busy worker that hand-off, not the function, is most of a quick sync step.
Here a result is put on a list for its loop, and only the first result of a
batch wakes the loop, which then settles every result that arrived meanwhile.

Waking a thread per call costs more than a quick step, and under the interpreter
lock more threads at work would only take turns: while calls are quick, a few
threads (``_CORE``) take them one after another from one queue, with no sleep in
between. The other threads are for calls that block (I/O, a sleep): when calls
are waiting and none has started for ``_STALLED``, the threads at work are taken
to be blocked and as many again are woken (started as needed, up to ``size``),
period after period, until every waiting call has a thread. A slow step holds a
quick one up for about ``_STALLED``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any

_Result = tuple["asyncio.Future[Any]", Any, BaseException | None]
_Call = tuple[Callable[[], Any], Callable[[Any, BaseException | None], None]]
"""A function, and what hands its result (or error) back."""

_CORE = 2
"""Threads woken at once for calls: more would only take turns at the interpreter lock."""
_STALLED = 0.001
"""Calls waiting with none started for this long: the threads at work are blocked."""


class StepThreads(concurrent.futures.Executor):
    """Up to ``size`` threads running step functions for event loops (see the module)."""

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        """Where threads with no call to take sleep."""
        self._stalls = threading.Condition(self._lock)
        """Where the watch waits for calls that could stall."""
        self._queued: collections.deque[_Call] = collections.deque()
        self._threads: list[threading.Thread] = []
        self._awake = 0
        """Threads running a call or about to take one (not asleep)."""
        self._asleep = 0
        self._last_start = 0.0
        """When a thread last took a call (monotonic)."""
        self._watch: threading.Thread | None = None
        self._watch_idle = False
        """The watch sleeps until told that calls wait (else it looks by itself)."""
        self._results: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
        self._closed = False

    def call(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``fn()`` in a thread; its result (or error) on the running loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def hand_back(value: Any, error: BaseException | None) -> None:
            with self._lock:
                pending = self._results.setdefault(loop, [])
                first = not pending
                pending.append((future, value, error))
            if first:  # later results of this batch ride on this wake-up
                try:
                    loop.call_soon_threadsafe(self._settle, loop)
                except RuntimeError:  # that loop has closed: nobody waits
                    with self._lock:
                        self._results.pop(loop, None)

        self._put((fn, hand_back))
        return future

    def _put(self, call: _Call) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the step threads are shut down")
            if not self._queued:  # the stall clock runs from when calls begin to wait
                self._last_start = time.monotonic()
            self._queued.append(call)
            if self._awake < _CORE:
                self._wake()
            elif self._watch is None:
                self._watch = threading.Thread(
                    target=self._watch_main, name=f"{self._name}_watch", daemon=True
                )
                self._watch.start()
            elif self._watch_idle:
                self._watch_idle = False
                self._stalls.notify()

    def _wake(self) -> bool:
        """With the lock held: one more thread awake, if there is one to wake or start."""
        if self._asleep:
            self._asleep -= 1
            self._awake += 1
            self._ready.notify()
            return True
        if len(self._threads) < self._size:
            self._awake += 1
            thread = threading.Thread(
                target=self._main, name=f"{self._name}_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
            return True
        return False

    def _main(self) -> None:
        lock = self._lock
        with lock:
            while True:
                while not self._queued:
                    if self._closed:
                        self._awake -= 1
                        return
                    self._awake -= 1
                    self._asleep += 1
                    self._ready.wait()  # whoever wakes it counts it awake again
                fn, hand_back = self._queued.popleft()
                self._last_start = time.monotonic()
                lock.release()
                try:
                    value: Any = None
                    error: BaseException | None = None
                    try:
                        value = fn()
                    except StopIteration as exc:  # an asyncio future cannot carry it
                        error = RuntimeError(f"a step function raised StopIteration: {exc!r}")
                    except BaseException as exc:
                        error = exc
                    hand_back(value, error)
                    del fn, hand_back, value, error
                finally:
                    lock.acquire()

    def _watch_main(self) -> None:
        """While calls wait and none starts for ``_STALLED``, give each a thread."""
        with self._lock:
            while not self._closed:
                if not self._queued:
                    self._watch_idle = True
                    self._stalls.wait()
                    continue
                idle_for = time.monotonic() - self._last_start
                if idle_for < _STALLED:
                    self._stalls.wait(_STALLED - idle_for)
                    continue
                # As many again as are awake (each waiting call at most): blocked
                # calls reach a thread each within a few periods, while a thread
                # merely kept from the interpreter lock wakes a few, not all.
                for _ in range(min(len(self._queued), max(1, self._awake))):
                    if not self._wake():
                        break
                self._last_start = time.monotonic()  # give those woken their turn
                self._stalls.wait(_STALLED)

    def _settle(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            results = self._results.pop(loop, [])
        for future, value, error in results:
            if future.done():  # the caller gave up (cancelled)
                continue
            if error is None:
                future.set_result(value)
            elif isinstance(error, asyncio.CancelledError):  # dropped at shutdown
                future.cancel()
            else:
                future.set_exception(error)

    # -- the Executor interface, for callers that want one ------------------------------

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def hand_back(value: Any, error: BaseException | None) -> None:
            if error is None:
                done.set_result(value)
            else:
                done.set_exception(error)

        def run() -> Any:
            return fn(*args, **kwargs)

        done.set_running_or_notify_cancel()
        self._put((run, hand_back))
        return done

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Let the threads end once their calls are done; with ``cancel_futures``
        the calls not yet started are dropped (their callers are cancelled)."""
        dropped: list[_Call] = []
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if cancel_futures:
                dropped = list(self._queued)
                self._queued.clear()
            threads = list(self._threads)
            # Every thread wakes: to take what is still queued, or to end.
            self._awake += self._asleep
            self._asleep = 0
            self._ready.notify_all()
            self._stalls.notify()
        for _, hand_back in dropped:
            hand_back(None, asyncio.CancelledError())
        if wait:
            for thread in threads:
                thread.join()
