"""The worker's side of sticky execution: a run that parks here may stay asleep
(its handler suspended where it waited, its slot freed), and claimed here again is
woken in place when nothing but its waits changed in the store, else unwound and
replayed from the store (``sticky.py`` keeps the sleepers)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from .attempt import Attempt
from .clock import Clock
from .errors import StoreError
from .slot_wake import SlotWake
from .sticky import Sleeper, Sleepers, unchanged
from .store.base import ClaimedRun, Store


class SleepsHere:
    """Sticky execution, the worker's side (see the module); a mixin of ``Worker``."""

    store: Store
    clock: Clock
    _active: dict[str, tuple[asyncio.Task[None], Attempt]]
    _forget: dict[str, tuple[asyncio.Task[None], Callable[[], None]]]
    _sleepers: Sleepers
    _sticky_from: int
    _stopping: bool
    _claiming: int
    _held: frozenset[str]
    _slots: SlotWake
    _moved: asyncio.Event
    _wake: asyncio.Event
    _start: Callable[[ClaimedRun], None]

    def _sleep(self, run_id: str) -> asyncio.Future[None] | None:
        """A run that parked here may stay asleep (sticky): its slot is freed."""
        entry = self._active.get(run_id)
        if entry is None or self._stopping:
            return None
        task, attempt = entry
        if len(attempt.memo) < self._sticky_from:
            return None  # a short history replays faster than a woken handler resumes
        del self._active[run_id]
        self._moved.set()
        forget = self._forget.pop(run_id, None)
        if forget is not None:
            forget[1]()
        self._wake.set()
        if attempt.run.workflow in self._held:
            self._slots.freed()
        return self._sleepers.put(run_id, task, attempt, self.clock.now())

    async def _resume(self, claimed: ClaimedRun, sleeper: Sleeper) -> None:
        """Wake a sleeping run claimed again here, if nothing but its waits changed;
        else unwind it and replay the run from the store."""
        run_id = claimed.run.id
        try:
            summary = claimed.summary  # read by the claim, in its transaction
            if summary is None:
                summary = await self.store.step_summary(run_id)
            same = unchanged(sleeper.attempt, summary)
        except StoreError:
            same = False
        if same:
            sleeper.attempt.resume(claimed)
            sleeper.wake.set_result(None)
            return
        # Until the replay executes, the run is counted as a claim in flight: unwound,
        # it has left _active, and settle() must not report quiet meanwhile.
        self._claiming += 1
        try:
            Sleepers.evict(sleeper, "the run changed elsewhere")
            with contextlib.suppress(BaseException):
                await sleeper.task
            await self._replay(claimed)
        finally:
            self._claiming -= 1

    async def _replay(self, claimed: ClaimedRun) -> None:
        """Execute ``claimed``, leased here without its steps, from its steps read from
        the store; handed back (due at once) if they cannot be read."""
        try:
            replay = await self._with_steps(claimed)
        except StoreError:
            with contextlib.suppress(Exception):
                await self.store.release(claimed.lease)
            return
        self._start(replay)

    async def _with_steps(self, claimed: ClaimedRun) -> ClaimedRun:
        """``claimed`` with its step records, read from the store (a replay needs them)."""
        found = await self.store.get_runs([claimed.run.id])
        return ClaimedRun(claimed.run, found[0][1] if found else [], claimed.lease, claimed.due_at)
