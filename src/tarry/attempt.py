"""One attempt at a run: from its claim to the write that gives its lease up.

The execution (``execution.py``) and the step methods (``step.py``) share this
state. It holds what they depend on, handed down by the worker: the settings,
the store, the clock, the process's ``Local`` and the thread pool for step
functions, never the App.

Cancellation is checked at every step boundary (``boundary``): the flag is set
by the worker's heartbeat and by ``save_step`` (a cancel stored from any
process), and at once by ``Local`` (a cancel asked in this process).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from . import serde
from .branches import Branches
from .clock import Clock
from .context import Context
from .errors import LeaseLost, StoreError, StoreUnavailable, Suspend
from .local import Local
from .models import EndStatus, event_from_json
from .settings import Settings
from .store.base import ClaimedRun, StepRow, Store
from .store.matching import trigger_of

log = logging.getLogger("tarry")


class Attempt:
    """The state of one run while one worker holds its lease."""

    def __init__(
        self,
        claimed: ClaimedRun,
        *,
        retries: int,
        settings: Settings,
        store: Store,
        clock: Clock,
        local: Local,
        threads: concurrent.futures.Executor,
        doubles: Mapping[str, Callable[..., Any]] | None = None,
        version_of: Callable[[str], str | None] = lambda _: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.local = local
        self.threads = threads
        """Where synchronous step functions run."""
        self.doubles: Mapping[str, Callable[..., Any]] = doubles or {}
        """Step ids whose function is replaced in this attempt (``tarry.testing``)."""
        self.version_of = version_of
        """The code version of a workflow in this process (child runs record theirs)."""
        self.version = version_of(claimed.run.workflow)
        """The code version this attempt runs."""
        self.run = claimed.run
        self.lease = claimed.lease
        self.retries = retries
        self.memo: dict[str, StepRow] = {row.key: row for row in claimed.steps}
        self.history_bytes = sum(_size(row) for row in claimed.steps)
        self.top = max((row.pos or 0 for row in claimed.steps), default=0)
        """The highest place among the step records this attempt knows of."""
        """What the run's step records hold, outputs and errors: capped by
        ``max_history_bytes``."""
        self.cancel_requested = False
        self.dry = False
        """A replay that must write nothing (``tarry check``): see ``check.py``."""
        self.releasing = False
        """Set just before a write that gives the lease up (park, retry, end): a lease
        found gone after that is this attempt's own doing, not a takeover."""
        self.over = False
        """The lease is given up (parked, retrying, ended): nothing more may be written."""
        self.sleep: Callable[[], asyncio.Future[None] | None] = _no_sleep
        """Set by a worker that may keep this attempt asleep after it parks (sticky)."""
        self.branches = Branches(store, claimed.lease, self)
        """Where the branches of the handler park the run together."""
        self.trigger = trigger_of(self.run.workflow, self.run.payload, self.run.trigger)
        event = event_from_json(self.trigger) if self.run.trigger is not None else None
        self.ctx = Context(self.run.id, self.run.workflow, serde.loads(self.run.payload), event)

    def known_steps(self) -> tuple[int, int]:
        """How many step records this attempt knows of (those it waits on included)
        and the highest place among them: what the store must hold to resume it."""
        pending = self.branches.pending_steps()
        count = len(self.memo) + sum(1 for key in pending if key not in self.memo)
        return count, max([self.top, *(place or 0 for place in pending.values())])

    def resume(self, claimed: ClaimedRun) -> None:
        """Wake after a park: the run was claimed again here, under ``claimed.lease``."""
        self.run = claimed.run
        self.lease = claimed.lease
        self.branches.lease = claimed.lease
        self.cancel_requested = claimed.run.cancel_requested
        self.over = False
        self.releasing = False

    def request_cancel(self) -> None:
        """A cancel of this run is stored: start no further step. Any thread."""
        self.cancel_requested = True

    async def boundary(self) -> None:
        """A step is about to start work (or the handler to end the run): honour a
        cancellation requested meanwhile instead."""
        if self.over:
            raise Suspend("this attempt is over")
        if self.cancel_requested:
            await self.honor_cancel()
            raise Suspend("cancelled")

    async def end(
        self, status: EndStatus, output: bytes | None = None, error: bytes | None = None
    ) -> None:
        """End the run, unless a cancel is pending: then it ends cancelled."""
        if self.over:
            return
        if self.cancel_requested:
            await self.honor_cancel()
            return
        self.releasing = True
        try:
            ended = await self.store.finish(self.lease, status, output, error)
        except (LeaseLost, StoreUnavailable) as exc:
            log.info("run %s: could not end here (%s); the next attempt decides", self.run.id, exc)
            self.over = True
            return
        except StoreError as exc:
            if status == "failed":
                log.error("run %s: the store refused its end: %s", self.run.id, exc)
                self.over = True
                return
            # The store refused this end (not an outage: it would refuse it again);
            # the run fails with that cause rather than being replayed forever.
            cause = {"type": type(exc).__name__, "message": str(exc)}
            await self.end("failed", error=orjson.dumps(cause))
            return
        if ended == "cancelled" and status != "cancelled":
            log.info("run %s: cancelled before it could end %s", self.run.id, status)
        self.ended()

    async def honor_cancel(self) -> None:
        """End the run cancelled, with the reason its cancel was asked with."""
        if self.over:
            return
        self.releasing = True
        try:
            await self.store.honor_cancel(self.lease)
        except (LeaseLost, StoreError) as exc:
            log.info("run %s: could not cancel here (%s)", self.run.id, exc)
            self.over = True
            return
        self.ended()

    def remember(self, row: StepRow) -> None:
        """A step record this attempt stored (or the store stored for it)."""
        before = self.memo.get(row.key)
        self.history_bytes += _size(row) - (0 if before is None else _size(before))
        self.memo[row.key] = row
        if row.pos is not None and row.pos > self.top:
            self.top = row.pos

    def ended(self) -> None:
        """The run ended by this attempt's write (or a pending cancel within it)."""
        self.over = True
        self.local.ended(self.run.id)

    def stop(self, exc: Exception) -> Suspend:
        """This attempt cannot write any more: its lease was taken over, or the store is
        unreachable past its retries. Either way the run stays as stored, and its lease
        (when it expires) hands it to a worker that can carry on."""
        if isinstance(exc, StoreUnavailable):
            log.warning("run %s: stopping this attempt: %s", self.run.id, exc)
        self.over = True
        return Suspend(str(exc))


def _size(row: StepRow) -> int:
    return len(row.output or b"") + len(row.error or b"")


def _no_sleep() -> asyncio.Future[None] | None:
    return None
