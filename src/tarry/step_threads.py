"""The threads that run step functions written as plain ``def``.

``loop.run_in_executor`` hands each call to a ``ThreadPoolExecutor`` and each
result back through its own ``call_soon_threadsafe``: a concurrent future, an
asyncio future chained to it, and one write to the loop's wake-up pipe per step.
On a busy worker that hand-off, not the function, is most of a quick sync step.
Here a result is put on a list for its loop, and only the first result of a
batch wakes the loop, which then settles every result that arrived meanwhile.

Threads are started as calls need them, up to ``size``, and a call never waits
behind another while a thread is free or can be started (each call reserves an
idle thread, as ``ThreadPoolExecutor`` does), so a slow step never holds up a
quick one beside it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any

_Result = tuple["asyncio.Future[Any]", Any, BaseException | None]
_Call = tuple[Callable[[], Any], Callable[[Any, BaseException | None], None]]
"""A function, and what hands its result (or error) back."""


class StepThreads(concurrent.futures.Executor):
    """Up to ``size`` threads running step functions for event loops (see the module)."""

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        """Threads waiting for a call that no call has reserved yet."""
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
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._main,
                    name=f"{self._name}_{len(self._threads)}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
        self._calls.put(call)

    def _main(self) -> None:
        calls, lock = self._calls, self._lock
        while True:
            item = calls.get()
            if item is None:
                calls.put(None)  # for the next thread
                return
            fn, hand_back = item
            value: Any = None
            error: BaseException | None = None
            try:
                value = fn()
            except StopIteration as exc:  # an asyncio future cannot carry it
                error = RuntimeError(f"a step function raised StopIteration: {exc!r}")
            except BaseException as exc:
                error = exc
            with lock:
                self._idle += 1
            hand_back(value, error)
            del item, fn, hand_back, value, error

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
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._calls.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[1](None, asyncio.CancelledError())
        self._calls.put(None)
        if wait:
            for thread in threads:
                thread.join()
