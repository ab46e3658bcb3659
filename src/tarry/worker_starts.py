"""Runs started or woken in this process, taken at once by its worker (an eager
start, a handed-off wake).

``App.start`` in a process whose worker has a free slot does not leave the new
run queued for that worker's next claim: the run is inserted already leased to
the worker (``Store.start_leased``) and the worker starts executing it when the
insert commits. That saves the claim's write and a turn of the worker's loop
per run, and the wait between a start and its first step. Temporal calls this
an eager workflow start.

The worker takes a start only when it would have claimed the run at once
anyway: it runs on the caller's event loop, is not stopping, has a slot no claim
is about to fill (no claim in flight, its last claim found fewer due runs than
it had room for, and no start made in this process was queued since that claim
began: runs started one after another begin in that order), and the workflow
has no concurrency cap and no flow rules, whose counts and gates only a claim
applies. Otherwise the run is queued as before. A crash between the insert and
the execution leaves a leased run, taken over when its lease expires, as after a
crash between a claim and its execution.

A signal or message sent on that loop is offered the same way (``offer_wake``):
if the worker would take a start of the woken run's workflow now, the delivery's
transaction leases the run to it (``Handoff``) with its steps, and the worker
executes it when that commits, with no claim. A run asleep in this worker
(sticky execution) is leased with only its steps' summary and woken in place: a
resume then costs the delivery's commit and nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from .local import Local
from .settings import Settings
from .sticky import Sleepers
from .store.base import ClaimedRun, Handoff, Lease, RunRow, Store
from .store.core.claims import new_token


class StartsHere:
    """The worker's side of eager starts (see the module); a mixin of ``Worker``."""

    concurrency: int
    store: Store
    settings: Settings
    local: Local
    _sleepers: Sleepers
    _active: Mapping[str, object]
    _claiming: int
    _stopping: bool
    _loop: asyncio.AbstractEventLoop | None
    _start: Callable[[ClaimedRun], None]
    _replay: Callable[[ClaimedRun], Coroutine[Any, Any, None]]

    def _init_starts(self) -> None:
        self._reserved = 0
        """Slots held for starts taken whose insert has not committed yet."""
        self._backlog = False
        """The last claim filled every free slot: more runs may be due, and a start
        taken now would go ahead of them."""
        self._takes: frozenset[str] = frozenset()
        """Workflows whose starts may be taken: no cap, no flow rules."""
        self._queued_seen = 0
        """``Local.queued`` when the last claim that found room to spare began: a start
        queued here since may still be due, and a start taken now would pass it."""
        self._tasks_aside: set[asyncio.Task[None]] = set()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the worker runs on (None before it runs)."""
        return self._loop

    def _free(self) -> int:
        return self.concurrency - len(self._active) - self._reserved

    def _has_room(self) -> bool:
        """Not stopping, no backlog of due runs, and a free slot."""
        return not self._stopping and not self._backlog and self._free() > 0

    def _may_take(self) -> bool:
        """Whether a run started now would have been claimed at once anyway: also no
        claim in flight, and no start of this process queued since the last claim."""
        return self._has_room() and not self._claiming and self.local.queued == self._queued_seen

    def take(self, run_id: str, workflow: str) -> Lease | None:
        """A lease on the run about to be started, and a slot held for it; None where
        the run is to be queued instead. Called on the worker's loop."""
        if workflow not in self._takes or not self._may_take():
            return None
        self._reserved += 1
        return Lease(run_id, new_token())

    def offer_wake(self) -> Handoff | None:
        """An offer to take the run a signal or message about to be sent wakes, and a
        slot held for it; None where no run may be taken now. Called on the worker's
        loop; every offer goes back through ``adopt_wake``."""
        # A claim in flight does not stop it, unlike a start (the woken run passes no
        # start queued here): the claim hands back what it brings beyond the slots
        # left (Worker._claim), which happens only when runs were due meanwhile. A
        # backlog of due runs does stop it.
        if not self._takes or not self._has_room():
            return None
        self._reserved += 1
        return Handoff(new_token(), self.settings.lease, self._takes, self._asleep_here)

    def _asleep_here(self, run_id: str) -> bool:
        # Asked inside the delivery's transaction, which may run on the store's thread:
        # a lookup in the sleepers' dict, nothing more.
        return run_id in self._sleepers.ids()

    def adopt_wake(self, handoff: Handoff) -> None:
        """The delivery offered ``handoff`` is over: execute the run it leased here (as
        a claim would have), and let the slot go otherwise."""
        self._reserved -= 1
        claimed = handoff.taken
        if claimed is None:
            return
        if self._stopping:
            self._hand_back(claimed.lease)
        elif claimed.summary is None or claimed.run.id in self._sleepers.ids():
            self._start(claimed)  # replayed from its steps, or woken in place (_resume)
        else:  # asleep when the delivery committed, unwound since: replayed, with its steps
            self._aside(self._replay(claimed))

    def _hand_back(self, lease: Lease) -> None:
        self._aside(self._give_back(lease))

    def _aside(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (a run leased here on its way to executing or back to the
        store) beside the worker, counted as a claim in flight until it is over, so
        settle() (tarry.testing) does not move the clock past it."""
        self._claiming += 1
        task = asyncio.ensure_future(work)
        self._tasks_aside.add(task)
        task.add_done_callback(self._aside_over)

    def _aside_over(self, task: asyncio.Task[None]) -> None:
        self._claiming -= 1
        self._tasks_aside.discard(task)

    def adopt(self, run: RunRow | None, lease: Lease) -> None:
        """The start taken with ``lease`` committed (``run``: its record; None where it
        was queued after all, or the id existed, or the insert failed): execute it,
        and let its slot go otherwise."""
        self._reserved -= 1
        if run is None:
            return
        if self._stopping:  # the worker stopped meanwhile: hand the run back at once
            self._hand_back(lease)
            return
        self._start(ClaimedRun(run, [], lease, run.created_at))

    async def _give_back(self, lease: Lease) -> None:
        with contextlib.suppress(Exception):  # else its lease expires and it is claimed then
            await self.store.release(lease)
