"""Runs started in this process, taken at once by its worker (an eager start).

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
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

from .local import Local
from .store.base import ClaimedRun, Lease, RunRow, Store
from .store.core.claims import new_token


class StartsHere:
    """The worker's side of eager starts (see the module); a mixin of ``Worker``."""

    concurrency: int
    store: Store
    local: Local
    _active: Mapping[str, object]
    _claiming: int
    _stopping: bool
    _loop: asyncio.AbstractEventLoop | None
    _start: Callable[[ClaimedRun], None]

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
        self._giving_back: set[asyncio.Task[None]] = set()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the worker runs on (None before it runs)."""
        return self._loop

    def _free(self) -> int:
        return self.concurrency - len(self._active) - self._reserved

    def take(self, run_id: str, workflow: str) -> Lease | None:
        """A lease on the run about to be started, and a slot held for it; None where
        the run is to be queued instead. Called on the worker's loop."""
        if self._stopping or self._claiming or self._backlog or workflow not in self._takes:
            return None
        if self.local.queued != self._queued_seen:
            return None
        if self._free() <= 0:
            return None
        self._reserved += 1
        return Lease(run_id, new_token())

    def adopt(self, run: RunRow | None, lease: Lease) -> None:
        """The start taken with ``lease`` committed (``run``: its record; None where it
        was queued after all, or the id existed, or the insert failed): execute it,
        and let its slot go otherwise."""
        self._reserved -= 1
        if run is None:
            return
        if self._stopping:  # the worker stopped meanwhile: hand the run back at once
            giving = asyncio.ensure_future(self._give_back(lease))
            self._giving_back.add(giving)
            giving.add_done_callback(self._giving_back.discard)
            return
        self._start(ClaimedRun(run, [], lease, run.created_at))

    async def _give_back(self, lease: Lease) -> None:
        with contextlib.suppress(Exception):  # else its lease expires and it is claimed then
            await self.store.release(lease)
