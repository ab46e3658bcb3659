"""Cron schedules in the store: what each has covered, and a slot's start.

A cron workflow's row in ``schedules`` keeps ``covered_until``: every slot at or
before that time was dealt with (started, or skipped as missed), so a worker that
starts after a gap knows what it missed. Which slots to start is decided above the
store (``tarry.schedules.plan``); the store only creates the runs and moves the
mark, never back, in one transaction. Two workers starting the same slot create
one run: the slot is in the run's id, and an id that exists is left as it is.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import partial
from typing import Any, TypeVar

from ..base import NewRun
from .configs import WorkflowConfigs
from .port import Tx
from .runs import insert_run

T = TypeVar("T")


async def schedule_marks(tx: Tx) -> dict[str, float]:
    return {str(row[0]): float(row[1]) for row in await tx.all("schedule_marks", {})}


async def start_slots(
    tx: Tx, workflow: str, runs: Sequence[NewRun], covered: float, configs: WorkflowConfigs
) -> list[str]:
    created = [run.id for run in runs if await insert_run(tx, run, configs)]
    await tx.run("cover_schedule", {"workflow": workflow, "covered": covered, "now": tx.now})
    return created


class ScheduleStore:
    """The Store's schedule methods, mixed into ``CoreStore``."""

    _configs: WorkflowConfigs

    @abstractmethod
    def _transact(
        self, body: Callable[[Tx], Coroutine[Any, Any, T]], *, idempotent: bool = True
    ) -> Awaitable[T]: ...

    async def schedule_marks(self) -> dict[str, float]:
        return await self._transact(schedule_marks)

    async def start_slots(self, workflow: str, runs: Sequence[NewRun], covered: float) -> list[str]:
        # Repeating it after an unknown commit creates nothing twice: the ids exist.
        return await self._transact(
            partial(start_slots, workflow=workflow, runs=list(runs), covered=covered,
                    configs=self._configs)
        )  # fmt: skip
