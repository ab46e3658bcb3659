"""The one source of "now" and of sleeping until a time.

Every deadline tarry keeps (a timer, a wait's timeout, a lease, a retry's
backoff, a signal's retention) is read from a ``Clock``, which the App hands
to its store, its workers and its steps. ``SystemClock`` is the wall clock.
``ManualClock`` stands still until it is moved: ``advance("7d")`` fires every
timer that came due, so a test of a week-long wait takes a millisecond.

Clock time is epoch seconds (float). It is about *when* things are due, not
about how long an operation may take: connection timeouts and retry pacing
against a database stay on the real monotonic clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Protocol

from .durations import Duration, parse_duration

_wall = time.time


def _offset_wall(offset: float) -> float:
    return _wall() + offset


class Clock(Protocol):
    def now(self) -> float:
        """The current time, epoch seconds."""

    async def sleep_until(self, when: float) -> None:
        """Return once ``now() >= when``."""

    async def wait(self, event: asyncio.Event, until: float | None) -> bool:
        """Wait for ``event`` or for the time ``until`` (None: no limit), whichever
        comes first; True when the event was set."""


class SystemClock:
    """The wall clock (``time.time``), plus ``offset`` seconds.

    A store shared by many machines sets ``offset`` to its server's clock minus
    this machine's, so that every process reads one time (see the PostgreSQL
    store); alone, the offset is 0."""

    def __init__(self) -> None:
        self._offset = 0.0
        self.now: Callable[[], float] = _wall
        """The current time, epoch seconds: ``time.time`` itself while there is no
        offset (it is read several times per step)."""

    @property
    def offset(self) -> float:
        return self._offset

    @offset.setter
    def offset(self, seconds: float) -> None:
        self._offset = seconds
        self.now = _wall if seconds == 0 else functools.partial(_offset_wall, seconds)

    async def sleep_until(self, when: float) -> None:
        delay = when - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    async def wait(self, event: asyncio.Event, until: float | None) -> bool:
        if event.is_set():
            return True
        timeout = None if until is None else max(0.0, until - self.now())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return event.is_set()


class ManualClock:
    """A clock that moves only when told: ``advance(duration)`` or ``set(when)``.

    Sleepers on any event loop and any thread are woken by the move that brings
    their time. Starts at ``start`` (epoch seconds; default: the wall clock now).
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._sleepers: list[
            tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]
        ] = []

    def now(self) -> float:
        return self._now

    def advance(self, duration: Duration) -> float:
        """Move forward by ``duration`` and wake whoever's time has come; the new now."""
        return self.set(self._now + parse_duration(duration))

    def set(self, when: float) -> float:
        """Move to ``when`` (never backwards) and wake whoever's time has come."""
        due: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        with self._lock:
            if when < self._now:
                raise ValueError(
                    f"a ManualClock never goes back: it is at {self._now}, asked for {when}"
                )
            self._now = when
            while self._sleepers and self._sleepers[0][0] <= when:
                _, _, loop, future = heapq.heappop(self._sleepers)
                due.append((loop, future))
        for loop, future in due:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(_wake, future)
        return when

    async def sleep_until(self, when: float) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if when <= self._now:
                return
            heapq.heappush(self._sleepers, (when, next(self._order), loop, future))
        await future

    async def wait(self, event: asyncio.Event, until: float | None) -> bool:
        if event.is_set():
            return True
        if until is None:
            await event.wait()
            return True
        waiter = asyncio.ensure_future(event.wait())
        alarm = asyncio.ensure_future(self.sleep_until(until))
        try:
            await asyncio.wait({waiter, alarm}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            alarm.cancel()
        return event.is_set()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
