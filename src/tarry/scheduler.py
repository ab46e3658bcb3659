"""The worker's side of cron schedules: start each slot's run, then sleep until the next.

The claim loop asks its ``Scheduler`` on every turn (``tick``). Until the earliest
next slot of its workflows has come, that costs a comparison and reads nothing: the
loop sleeps on its clock until then (or until a wake-up), as it does for a run's
due time, so moving a ``ManualClock`` past a slot starts it, and nothing polls.

When a slot has come, the scheduler reads what the store says each schedule has
covered (one read), plans what to start (``schedules.plan``: the slot that is due,
and after a gap what ``catch_up`` wants of the missed ones), and has the store
create those runs and move the mark in one transaction per workflow. Every worker
of a workflow does this at each of its slots; the slot is in the run's id, so the
first to commit creates the run and the others find it. A worker that comes back
after every worker was down finds the mark where the last one left it, and so
knows which slots were missed.
"""

from __future__ import annotations

import asyncio
import logging

from . import observe, serde
from .registry import Registry
from .schedules import MAX_CATCH_UP, Cron, plan, slot_run_id
from .store.base import NewRun, Store

log = logging.getLogger("tarry")

_NEVER = float("inf")


class Scheduler:
    """Starts the runs of the cron slots of a registry's workflows, for one worker."""

    def __init__(self, registry: Registry, store: Store) -> None:
        self.registry = registry
        self.store = store
        self._schedules: dict[str, Cron] | None = None
        """Read from the registry at the first tick (workflows register before)."""
        self._covered: dict[str, float] = {}
        """Per workflow, the mark this worker last wrote or read."""
        self._next: float | None = None
        """Clock time of the earliest next slot (None: look now; inf: none ahead)."""
        self._looking = asyncio.Lock()
        """One look at a time: the claim loop and a test driver's ``settle`` both tick."""

    async def tick(self, now: float) -> float | None:
        """Start the runs of the slots due at ``now``; the clock time of the next slot
        of any schedule (None: no schedule, or none has a slot ahead)."""
        if self._next is not None and now < self._next:
            return None if self._next == _NEVER else self._next
        async with self._looking:
            if self._next is not None and now < self._next:  # looked at meanwhile
                return None if self._next == _NEVER else self._next
            return await self._look(now)

    async def _look(self, now: float) -> float | None:
        if self._schedules is None:
            self._schedules = self.registry.schedules()
        if not self._schedules:
            self._next = _NEVER
            return None
        marks = await self.store.schedule_marks()
        upcoming = _NEVER
        for workflow, spec in self._schedules.items():
            covered = await self._start_due(workflow, spec, marks.get(workflow), now)
            after = spec.next_after(max(now, covered))
            if after is not None:
                upcoming = min(upcoming, after)
        self._next = upcoming
        return None if upcoming == _NEVER else upcoming

    async def _start_due(self, workflow: str, spec: Cron, mark: float | None, now: float) -> float:
        """Start what is due of one schedule; the time its slots are covered to now."""
        mine = self._covered.get(workflow)
        covered = mark if mine is None else mine if mark is None else max(mark, mine)
        todo = plan(spec, covered, now)
        if todo.skipped:
            log.warning(
                "cron workflow %r: %s slot(s) missed while no worker ran were not started "
                "(catch_up=%r%s)",
                workflow,
                f"{todo.skipped:,}{'+' if todo.skipped >= MAX_CATCH_UP else ''}",
                spec.catch_up,
                "; at most 1,000 are started" if spec.catch_up == "all" else "",
            )
        if todo.start or mark is None or todo.covered > mark:
            runs = [self._new_run(workflow, spec, slot) for slot in todo.start]
            created = await self.store.start_slots(workflow, runs, todo.covered)
            if created and observe.wanted(observe.INFO):
                for run_id in created:
                    observe.emit("started", observe.INFO, "run %s (%s) started by its schedule",
                                 run_id, workflow, args=(run_id, workflow), by="cron")  # fmt: skip
        self._covered[workflow] = todo.covered
        return todo.covered

    def _new_run(self, workflow: str, spec: Cron, slot: float) -> NewRun:
        payload = serde.dumps(spec.payload(slot), what="cron payload")
        return NewRun(
            slot_run_id(workflow, slot),
            workflow,
            payload,
            version=self.registry.version_of(workflow),
        )
