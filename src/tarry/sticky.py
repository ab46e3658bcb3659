"""Runs asleep in the worker that parked them, resumed without a replay.

When an async handler parks its run, the worker may keep the handler suspended
where it stopped instead of unwinding it (sticky execution). If the same worker
claims the run again, and nothing but the run's waits changed in the store
meanwhile (its step records number the same and reach the same place), the
handler is woken with a fresh lease and goes on from the wait, without loading
and replaying its history. Otherwise (claimed elsewhere in between, retried,
evicted to make room, a restart) it is replayed from the store as always: the
two paths give the same results.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from .attempt import Attempt
from .errors import Suspend


@dataclass(slots=True)
class Sleeper:
    task: asyncio.Task[Any]
    attempt: Attempt
    wake: asyncio.Future[None]
    since: float
    """Clock time it fell asleep."""


class Sleepers:
    """The runs asleep here, oldest first; at most ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._asleep: OrderedDict[str, Sleeper] = OrderedDict()

    def __len__(self) -> int:
        return len(self._asleep)

    def ids(self) -> Collection[str]:
        return self._asleep.keys()

    def put(
        self, run_id: str, task: asyncio.Task[Any], attempt: Attempt, now: float
    ) -> asyncio.Future[None]:
        """Keep the run asleep; the future the handler awaits to be woken."""
        while len(self._asleep) >= self.limit:
            _, oldest = self._asleep.popitem(last=False)
            self.evict(oldest, "room for a run that parked later")
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._asleep[run_id] = Sleeper(task, attempt, wake, now)
        return wake

    def expire(self, before: float) -> None:
        """Unwind the runs asleep since before ``before``: a parked run holds nothing
        once its window has passed."""
        while self._asleep:
            run_id, oldest = next(iter(self._asleep.items()))
            if oldest.since >= before:
                return
            del self._asleep[run_id]
            self.evict(oldest, "asleep for its whole window")

    def take(self, run_id: str) -> Sleeper | None:
        return self._asleep.pop(run_id, None)

    def drop(self, run_id: str, task: asyncio.Task[Any]) -> None:
        """The run's task ended: it no longer sleeps here."""
        found = self._asleep.get(run_id)
        if found is not None and found.task is task:
            del self._asleep[run_id]

    @staticmethod
    def evict(sleeper: Sleeper, why: str) -> None:
        """Unwind the sleeping handler: the run is replayed wherever it is claimed."""
        if not sleeper.wake.done():
            sleeper.wake.set_exception(Suspend(f"evicted: {why}"))

    async def close(self) -> None:
        sleepers = list(self._asleep.values())
        self._asleep.clear()
        for sleeper in sleepers:
            self.evict(sleeper, "the worker stops")
        for sleeper in sleepers:
            with contextlib.suppress(BaseException):
                await sleeper.task


def unchanged(attempt: Attempt, summary: tuple[int, int]) -> bool:
    """Whether the store holds exactly the steps the sleeping attempt knows of (its
    waits may have been answered): else something else ran or changed the run."""
    return summary == attempt.known_steps()
