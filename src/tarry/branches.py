"""Branches of one run: steps started side by side park the run together.

A handler may start steps concurrently (``asyncio.gather``, ``TaskGroup``,
``step.parallel``). A branch that reaches a wait with no stored answer does not
park the run at once: a sibling may still be running a step whose result must be
stored first (parking gives the lease up, and a result written after that would
be refused and the step run again). The wait is registered here instead, and the
run parks once no branch can progress (no step executing, no handler thread
running, nothing new registered over a turn of the event loop), on the union of
every branch's waits, each with its own deadline. Waits the store can answer at
once are answered, and those branches go on; the others stay registered.

A handler with one branch pays one turn of the event loop per park.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Any, Protocol

from .errors import LeaseLost, StoreUnavailable, Suspend
from .store.base import Lease, ParkResult, Store, WaitSpec


class Owner(Protocol):
    """The attempt the branches belong to (``attempt.Attempt``)."""

    releasing: bool
    over: bool

    def ended(self) -> None: ...

    def stop(self, exc: Exception) -> Suspend: ...

    def parked(self, waits: list[WaitSpec]) -> None:
        """The run parked on ``waits`` (for the lifecycle log)."""
        ...

    def sleep(self) -> asyncio.Future[None] | None:
        """After a park: a future to await if the worker keeps the handler asleep (it
        is woken with a new lease, or unwound with ``Suspend``), else None."""
        ...


class Branches:
    """The waits the branches of one attempt have registered, and what runs."""

    def __init__(self, store: Store, lease: Lease, owner: Owner) -> None:
        self.store = store
        self.lease = lease
        # Held weakly: the attempt holds its branches, and a cycle between them would
        # keep every ended run's records in memory until a pass of the cyclic garbage
        # collector (the attempt outlives every call that parks through here: the
        # worker and the handler's frames hold it meanwhile).
        self._owner = weakref.ref(owner)
        self.in_flight = 0
        """Steps executing and handler threads running: branches that can progress."""
        self._generation = 0
        self._changed: asyncio.Event | None = None
        """Made by the first settle that waits on it: most attempts never need one."""
        self._pending: dict[
            str, tuple[WaitSpec, bool, asyncio.Future[ParkResult], asyncio.Task[Any] | None]
        ] = {}
        self._settling: asyncio.Task[None] | None = None
        self.main: asyncio.Task[Any] | None = None
        """The task running an async handler (its branches are other tasks)."""
        self._tracked: set[asyncio.Task[Any]] = set()
        self._failing: set[asyncio.Task[Any] | None] = set()
        """Branches handed a failed wait: until each raises out or calls a step again,
        the run is not parked (its error may be about to fail the run)."""
        self.broken = False
        """A branch ended with an error the handler has not yet answered: the run is
        about to fail (or the handler catches it and calls a step again), so it must
        not be parked meanwhile."""

    @property
    def owner(self) -> Owner:
        owner = self._owner()
        if owner is None:
            raise RuntimeError("a run's branches were used after its attempt was gone")
        return owner

    def track(self) -> None:
        """A step method is called: note which task calls it. A call from the handler's
        own task means it went on past any branch's error."""
        main = self.main
        if main is None:
            return  # a plain def handler: step.parallel reports its branches' errors
        task = asyncio.current_task(main.get_loop())  # the loop given: no getpid() for it
        if task is main and not self.broken and not self._failing:
            return  # the common case: a handler without branches
        if task is None:
            return
        if task in self._failing:
            self._failing.discard(task)  # it went on past its failed wait
            self._bump()
        if task is self.main:
            if self.broken:
                self.broken = False
                self._bump()
            return
        if task not in self._tracked:
            self._tracked.add(task)
            task.add_done_callback(self._branch_done)

    def _branch_done(self, task: asyncio.Task[Any]) -> None:
        self._tracked.discard(task)
        self._failing.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None and not isinstance(exc, Suspend):
                self.set_broken(True)

    def set_broken(self, broken: bool) -> None:
        self.broken = broken
        self._bump()

    def pending_steps(self) -> dict[str, int | None]:
        """The steps waiting now, by key, with their places."""
        return {key: entry[0].pos for key, entry in self._pending.items()}

    def alone(self) -> bool:
        """Only the calling branch is at work and nothing waits: no sibling to mind."""
        return self.in_flight <= 1 and not self._pending

    def enter(self) -> None:
        """A branch starts work the run must wait for (a step, a handler thread)."""
        self.in_flight += 1
        self._bump()

    def leave(self) -> None:
        self.in_flight -= 1
        self._bump()

    def _bump(self) -> None:
        self._generation += 1
        changed = self._changed
        if changed is not None and self._settling is not None:  # only a settle waits on it
            changed.set()

    def _alone_in_handler(self) -> bool:
        """The handler's own task (or thread) is the only branch there is: nothing
        registered, nothing executing, no branch task seen."""
        if self._pending or self.in_flight or self._tracked or self._failing or self.broken:
            return False
        task = asyncio.current_task()
        return self.main is None or task is self.main

    async def _park_now(self, wait: WaitSpec) -> ParkResult:
        self.owner.releasing = True
        try:
            result = await self.store.park(self.lease, wait)
        except (LeaseLost, StoreUnavailable) as exc:
            raise self.owner.stop(exc) from None
        if result.outcome == "parked":
            self.owner.parked([wait])
            self.owner.over = True
            wake = self.owner.sleep()
            if wake is None:
                raise Suspend("parked")
            self._pending[wait.step_key] = (wait, True, _settled(), asyncio.current_task())
            try:
                await wake  # asleep here until claimed again (or unwound: Suspend)
            finally:
                self._pending.pop(wait.step_key, None)
            return await self.park(wait, stored=True)
        if result.outcome == "cancelled":  # a pending cancel ended the run instead
            self.owner.ended()
            raise Suspend("cancelled")
        self.owner.releasing = False
        return result

    async def park(self, wait: WaitSpec, stored: bool) -> ParkResult:
        """Register ``wait`` (``stored``: already stored as waiting, its waiters filed)
        and return its answer once the store has one; raises ``Suspend`` when the run
        parks instead."""
        if wait.step_key in self._pending:
            raise RuntimeError(f"two branches wait at step {wait.step_key!r} at once")
        if not stored and self._alone_in_handler():
            return await self._park_now(wait)  # no sibling anywhere: as before branches
        future: asyncio.Future[ParkResult] = asyncio.get_running_loop().create_future()
        self._pending[wait.step_key] = (wait, stored, future, asyncio.current_task())
        self._bump()
        if self._settling is None:
            self._settling = asyncio.ensure_future(self._settle())
        return await future

    def open(self) -> bool:
        """Whether a wait is registered or a settle under way: ``close`` has work."""
        return bool(self._pending) or self._settling is not None

    async def close(self) -> None:
        """The handler has returned or raised: no park may follow."""
        task, self._settling = self._settling, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_all(Suspend("the handler ended"))

    async def _quiet(self) -> None:
        """Return once no branch can progress: nothing in flight and nothing newly
        registered over one turn of the event loop."""
        while True:
            seen = self._generation
            await asyncio.sleep(0)
            held = self.broken or bool(self._failing)
            if self.in_flight == 0 and not held and seen == self._generation:
                return
            if self.in_flight or held:
                if self._changed is None:
                    self._changed = asyncio.Event()
                self._changed.clear()
                await self._changed.wait()

    async def _settle(self) -> None:
        try:
            while self._pending:
                await self._quiet()
                if self.owner.over:  # a branch found the lease gone: nothing more to write
                    self._fail_all(Suspend("this attempt is over"))
                    return
                waits = [(wait, stored) for wait, stored, _, _ in self._pending.values()]
                self.owner.releasing = True
                try:
                    if len(waits) == 1 and not waits[0][1]:
                        wait = waits[0][0]
                        results = {wait.step_key: await self.store.park(self.lease, wait)}
                    else:
                        results = await self.store.park_all(self.lease, [w for w, _ in waits])
                except (LeaseLost, StoreUnavailable) as exc:
                    self._fail_all(self.owner.stop(exc))
                    return
                outcomes = {result.outcome for result in results.values()}
                if "cancelled" in outcomes:  # a pending cancel ended the run instead
                    self.owner.ended()
                    self._fail_all(Suspend("cancelled"))
                    return
                if "parked" in outcomes:
                    self.owner.parked([w for w, _ in waits])
                    self.owner.over = True
                    wake = self.owner.sleep()
                    if wake is None:
                        self._fail_all(Suspend("parked"))
                        return
                    try:
                        await wake  # asleep until claimed again here
                    except BaseException as exc:
                        self._fail_all(exc)
                        return
                    # Woken with a new lease: every wait is stored now; ask again.
                    self._pending = {
                        key: (wait, True, future, task)
                        for key, (wait, _, future, task) in self._pending.items()
                    }
                    continue
                self.owner.releasing = False
                for key, result in results.items():
                    entry = self._pending.pop(key, None)
                    if entry is None or entry[2].done():
                        continue
                    if result.outcome == "conflict" or (
                        result.step is not None and result.step.status == "failed"
                    ):
                        self._failing.add(entry[3])
                    entry[2].set_result(result)
        finally:
            if self._settling is asyncio.current_task():
                self._settling = None

    def _fail_all(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for _, _, future, _ in pending.values():
            if not future.done():
                future.set_exception(exc)


def _settled() -> asyncio.Future[ParkResult]:
    """A placeholder answer for a wait registered only while its run sleeps."""
    future: asyncio.Future[ParkResult] = asyncio.get_running_loop().create_future()
    future.cancel()
    return future
