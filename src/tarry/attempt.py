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
from datetime import UTC, datetime
from typing import Any

import orjson

from . import observe, serde, tracing
from .branches import Branches
from .clock import Clock
from .context import Context
from .errors import LeaseLost, StepFailed, StoreError, StoreUnavailable, Suspend
from .local import Local
from .models import EndStatus, event_from_json
from .settings import Settings
from .store.base import ClaimedRun, StepRow, Store, WaitSpec
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
        self.memo: dict[str, StepRow] = {}
        self.history_bytes = 0
        """What the run's step records hold, outputs and errors: capped by
        ``max_history_bytes``."""
        self.top = 0
        """The highest place among the step records this attempt knows of."""
        self.latest_end = 0.0
        """When the newest step record known at the claim ended: a wait resolved then
        is the one that resumed the run."""
        for row in claimed.steps:  # one pass (a new run has none)
            self.memo[row.key] = row
            self.history_bytes += _size(row)
            if row.pos is not None and row.pos > self.top:
                self.top = row.pos
            if row.ended_at is not None and row.ended_at > self.latest_end:
                self.latest_end = row.ended_at
        self.cancel_requested = False
        self.dry = False
        """A replay that must write nothing (``tarry check``): see ``check.py``."""
        self.releasing = False
        """Set just before a write that gives the lease up (park, retry, end): a lease
        found gone after that is this attempt's own doing, not a takeover."""
        self.span: Any = None
        """This attempt's OpenTelemetry span, when tracing is on (``begin_span``)."""
        self.outcome = "stopped"
        """How this attempt gave its lease up, for its span."""
        self._error: str | None = None
        self._over = False
        self.sleep: Callable[[], asyncio.Future[None] | None] = _no_sleep
        """Set by a worker that may keep this attempt asleep after it parks (sticky)."""
        self.debug = observe.wanted(observe.DEBUG)
        """Whether each step's completion is told (read once: a step is too quick to
        check the log level for)."""
        self.woken_from: list[WaitSpec] | None = None
        """The waits this attempt parked on, until one is seen resolved (resumed)."""
        self.resume_told = False
        self.branches = Branches(store, claimed.lease, self)
        """Where the branches of the handler park the run together."""
        self._trigger: dict[str, Any] | None = None
        payload = serde.loads(self.run.payload)
        event = None
        if self.run.trigger is not None:
            event = event_from_json(self.trigger)
        self.ctx = Context(self.run.id, self.run.workflow, payload, event)

    @property
    def over(self) -> bool:
        """The lease is given up (parked, retrying, ended): nothing more may be written."""
        return self._over

    @over.setter
    def over(self, value: bool) -> None:
        self._over = value
        if value and self.span is not None:  # the attempt's span ends with it
            span, self.span = self.span, None
            tracing.end_attempt(span, self.outcome, self._error)

    def begin_span(self, *, resumed: bool) -> None:
        """Start this attempt's span (a no-op unless tracing is on)."""
        self.outcome, self._error = "stopped", None
        self.span = tracing.attempt_span(self.run, resumed=resumed)

    @property
    def trigger(self) -> dict[str, Any]:
        """The run's trigger event (a stand-in for a plain start), decoded when a
        condition first reads it: most runs never do."""
        if self._trigger is None:
            self._trigger = trigger_of(self.run.workflow, self.run.payload, self.run.trigger)
        return self._trigger

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
        self.begin_span(resumed=True)

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
        self,
        status: EndStatus,
        output: bytes | None = None,
        error: bytes | None = None,
        *,
        cause: BaseException | None = None,
    ) -> None:
        """End the run, unless a cancel is pending: then it ends cancelled. ``cause``:
        the exception that failed it, for the log (its traceback when it is not a
        step's failure, which was logged when the step gave up)."""
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
            refused = {"type": type(exc).__name__, "message": str(exc)}
            await self.end("failed", error=orjson.dumps(refused), cause=exc)
            return
        if ended == "cancelled" and status != "cancelled":
            log.info("run %s: cancelled before it could end %s", self.run.id, status)
        self.outcome = ended
        if ended == "failed" and self.span is not None:
            self._error = _error_text(error) or "failed"
        self.ended()
        self._told_end(ended, error, cause)

    def _told_end(self, ended: EndStatus, error: bytes | None, cause: BaseException | None) -> None:
        level = observe.WARNING if ended == "failed" else observe.INFO
        if not observe.wanted(level):
            return
        run = self.run
        if ended != "failed":  # the common end: its text is made only if it is written
            observe.emit(ended, level, "run %s (%s) %s", run.id, run.workflow,
                         args=(run.id, run.workflow, ended))  # fmt: skip
            return
        fields: dict[str, Any] = {}
        text = f"{observe.run_name(run.id, run.workflow)} failed"
        shown = _error_text(error)
        if shown is not None:
            fields["error"] = shown
            text += f": {shown}"
        if isinstance(cause, StepFailed):
            cause = None  # its traceback was logged when the step gave up
        observe.emit(ended, level, "%s", run.id, run.workflow, args=(text,), exc=cause,
                     **fields)  # fmt: skip

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
        self.outcome = "cancelled"
        self.ended()
        self._told_end("cancelled", None, None)

    def parked(self, waits: list[WaitSpec]) -> None:
        """The run parked on ``waits``: told to the lifecycle log."""
        self.woken_from = waits
        self.outcome = "parked"
        if not observe.wanted(observe.INFO):
            return
        shown = [orjson.loads(w.waiting_for) for w in waits]
        what = "; ".join(_wait_text(w) for w in shown)
        first = shown[0] if len(shown) == 1 else None
        until = min((w.deadline for w in waits if w.deadline is not None), default=None)
        text = f"{observe.run_name(self.run.id, self.run.workflow)} parked on {what}"
        if until is not None:
            text += f" until {_iso(until)}"
        observe.emit("parked", observe.INFO, "%s", self.run.id, self.run.workflow, args=(text,),
                     step=waits[0].step_key if first else None, wait=what,
                     until=None if until is None else _iso(until))  # fmt: skip

    def told_resumed(self, key: str, row: StepRow) -> None:
        """The run goes on past the wait it parked on (``row``, resolved): told once."""
        self.woken_from = None
        self.resume_told = True
        by = "timeout" if row.status == "timed_out" else str(row.kind)
        if self.span is not None:
            tracing.wait_passed(self.span, self.run, row, by)
        if not observe.wanted(observe.INFO):
            return
        fields: dict[str, Any] = {"by": by, "wait": row.spec}
        if row.kind == "event" and row.status == "completed":
            found = serde.loads(row.output)
            if isinstance(found, dict) and isinstance(found.get("id"), str):
                fields["event_id"] = found["id"]
        text = f"{observe.run_name(self.run.id, self.run.workflow)} resumed at step {key!r} by {by}"
        observe.emit("resumed", observe.INFO, "%s", self.run.id, self.run.workflow, args=(text,),
                     step=key,
                     **fields)  # fmt: skip

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


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _wait_text(shown: dict[str, Any]) -> str:
    """A wait as the log names it: its kind and key (``signal 'order-1'``)."""
    kind = str(shown.get("kind", "wait"))
    key = shown.get("key")
    return kind if key is None else f"{kind} {key!r}"


def _error_text(error: bytes | None) -> str | None:
    """A run's error JSON as one line, ``Type: message`` (None: none readable)."""
    info = serde.loads(error) if error else None
    if isinstance(info, dict):
        return f"{info.get('type', 'Error')}: {info.get('message', '')}"
    return None


def _size(row: StepRow) -> int:
    return len(row.output or b"") + len(row.error or b"")


def _no_sleep() -> asyncio.Future[None] | None:
    return None
