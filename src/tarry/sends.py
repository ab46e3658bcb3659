"""The App's sending methods: start a run, send a signal, an event or a message, and
cancel a run.

A mixin of ``App`` (which supplies ``_open``, ``settings``, ``workflows``, ``clock``,
``_local``, and from ``reads.py`` ``get_run`` and ``_missing``), as ``reads.py`` is:
what the client tells runs, apart from what it reads of them and how it operates
them after they end (``operations.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from . import observe, serde, tracing
from .clock import Clock
from .conditions import new_event
from .durations import Duration
from .errors import RunFinished, RunNotFound, SignalNotFound, WorkflowNotFound
from .flow import check_priority
from .ids import new_id
from .local import Local
from .models import ENDED_STATUSES, Run, SendResult, SignalResult
from .names import check_name
from .registry import Registry
from .schedules import start_time
from .settings import Settings
from .store.base import Handoff, NewRun, RunRow, Store
from .wait_schema import refused_signal


def answer_json(data: Any, noun: str, what: str, none_is: str, limit: int) -> bytes:
    """The JSON of data that answers a wait (a signal's, a token's): any value but None,
    which is what the wait returns ``none_is`` (its timeout); refused before anything
    is stored."""
    if data is None:
        raise ValueError(
            f"{noun} data must not be None: None is what a wait returns {none_is}; "
            "send {} or another value"
        )
    return serde.dumps(data, what=f"data of {what}", limit=limit)


class RunSends:
    """What the client sends to runs (mixed into ``App``)."""

    settings: Settings
    workflows: Registry
    clock: Clock
    _local: Local

    async def _open(self) -> Store:
        raise NotImplementedError

    def _missing(self, run_id: str) -> RunNotFound:
        raise NotImplementedError

    async def get_run(self, run_id: str) -> Run:
        raise NotImplementedError

    async def start(
        self,
        workflow: str,
        payload: Any = None,
        *,
        run_id: str | None = None,
        delay: Duration | None = None,
        start_at: datetime | None = None,
        priority: int | None = None,
    ) -> str:
        """Start a run; a second start with the same ``run_id`` returns that run's id.
        ``delay`` (``"1h"``) or ``start_at`` (an aware datetime): the run stays queued
        until then, and a ``cancel`` before ends it without running anything.
        ``priority``: claimed before due runs of lower priority (default: the
        workflow's own, else 0)."""
        if self.workflows and workflow not in self.workflows:
            raise WorkflowNotFound(
                f"no workflow {workflow!r} is registered; known: {sorted(self.workflows)}"
            )
        if not isinstance(workflow, str) or not workflow:
            raise WorkflowNotFound(f"workflow id must be a non-empty string, got {workflow!r}")
        check_name(workflow, "workflow id")
        if run_id is not None:
            check_name(run_id, "run_id")
        due_at = start_time(delay, start_at, self.clock.now())
        if priority is not None:
            check_priority(priority)
        data = serde.dumps(
            {} if payload is None else payload,
            what="start payload",
            limit=self.settings.max_output_bytes,
        )
        store = await self._open()
        version = self.workflows.version_of(workflow)
        new_run_id = run_id or new_id(self.clock.now())
        # A worker of this App on this loop with a free slot takes the run at once.
        taker = None
        if store.starts_leased and due_at is None:
            taker = self._local.taker(asyncio.get_running_loop())
        lease = None if taker is None else taker.take(new_run_id, workflow)
        leased: RunRow | None = None
        try:
            with tracing.sending("start", workflow=workflow, run_id=run_id) as trace:
                new_run = NewRun(new_run_id, workflow, data, version=version, trace=trace,
                                 due_at=due_at, priority=priority)  # fmt: skip
                if lease is None:
                    created_id, created = await store.create_run(new_run)
                else:
                    created_id, created, leased = await store.start_leased(
                        new_run, lease, self.settings.lease
                    )
            if created and leased is None and store.starts_leased:
                self._local.note_queued()  # no later start of this process passes it
            if created and observe.wanted(observe.INFO):
                observe.emit("started", observe.INFO, "run %s (%s) started", created_id, workflow,
                             args=(created_id, workflow), by="start")  # fmt: skip
        finally:
            if taker is not None and lease is not None:
                taker.adopt(leased, lease)  # after "started": the run's own logs follow it
        return created_id

    async def send_signal(
        self, signal: str, data: Any = None, *, strict: bool = False
    ) -> SignalResult:
        """Resume the run waiting on key ``signal``, else buffer the signal for it."""
        check_name(signal, "signal key")
        payload = answer_json(
            data, "signal", f"signal {signal!r}", "on timeout", self.settings.max_output_bytes
        )
        store = await self._open()
        sending = tracing.sending("send_signal", signal=signal)
        with self._handing_off(store) as handoff, sending as trace:
            outcome = await store.send_signal(
                signal, payload, strict=strict, retention_seconds=self.settings.signal_retention,
                trace=trace, handoff=handoff,
            )  # fmt: skip
        if outcome.status == "not_found":
            raise SignalNotFound(
                f"no run waits on signal {signal!r} (strict=True, so nothing was stored)"
            )
        if outcome.status == "invalid":  # the store raises a client's refusal itself
            raise refused_signal(signal, str(outcome.run_id), list(outcome.errors))
        return SignalResult(outcome.status, outcome.run_id)

    @contextlib.contextmanager
    def _handing_off(self, store: Store) -> Iterator[Handoff | None]:
        """A worker of this App on this loop offers to take the run the signal or
        message sent inside wakes (``worker_starts``): the offer, handed back to it
        once the delivery is over, whatever its outcome."""
        taker = None
        if store.wakes_leased:
            taker = self._local.taker(asyncio.get_running_loop())
        handoff = None if taker is None else taker.offer_wake()
        if taker is None or handoff is None:
            yield None
            return
        try:
            yield handoff
        except BaseException:
            # Not committed, as far as this call can tell. (A wait cancelled while its
            # commit lands, or a PostgreSQL commit whose answer was lost with its
            # connection, leaves the run leased to nobody here: a claim takes it when
            # that lease runs out, as after a worker's crash.)
            handoff.taken = None
            raise
        finally:
            taker.adopt_wake(handoff)

    async def send_event(self, name: str, data: Any = None, *, id: str | None = None) -> SendResult:
        """Store an event, start the workflows it triggers and resume the runs whose
        wait matches it. An ``id`` already seen within 24 hours is ignored."""
        store = await self._open()
        with tracing.sending("send_event", event=name, event_id=id) as trace:
            event = new_event(
                name,
                data,
                id,
                limit=self.settings.max_output_bytes,
                now=self.clock.now(),
                trace=trace,
            )
            outcome = await store.send_event(event, dedupe_seconds=self.settings.event_dedupe)
        for run_id in outcome.cancelled:  # by their cancel_on, at once
            self._local.ended(run_id)
        if (outcome.started or outcome.cancelled) and observe.wanted(observe.INFO):
            told = [("started", r) for r in outcome.started]
            told += [("cancelled", r) for r in outcome.cancelled]  # by their cancel_on
            workflows = outcome.workflows  # no read: a worker here may move them on meanwhile
            for kind, run_id in told:
                workflow = workflows.get(run_id)
                observe.emit(kind, observe.INFO, "run %s (%s) %s by event %r", run_id, workflow,
                             args=(run_id, workflow, kind, name), by="event",
                             event_id=outcome.event_id)  # fmt: skip
        return SendResult(
            [outcome.event_id], list(outcome.started), list(outcome.resumed), outcome.duplicate
        )

    async def send_message(self, run_id: str, name: str, data: Any = None) -> None:
        """Append a message to the run's mailbox; returns once it is durable."""
        check_name(name, "message name")
        payload = serde.dumps(
            {} if data is None else data,
            what=f"data of message {name!r}",
            limit=self.settings.max_output_bytes,
        )
        store = await self._open()
        sending = tracing.sending("send_message", run_id=run_id, message=name)
        with self._handing_off(store) as handoff, sending as trace:
            outcome = await store.send_message(run_id, name, payload, trace=trace, handoff=handoff)
        if outcome == "not_found":
            raise self._missing(run_id)
        if outcome == "finished":
            raise RunFinished(f"run {run_id!r} has ended; message {name!r} was not stored")

    async def cancel(self, run_id: str, reason: str | None = None, *, children: bool = True) -> Run:
        """Cancel a run: at once if queued or parked, else at its next step boundary.
        A run executing in this process starts no further step once this returns.
        The runs it invoked (``step.invoke``) that have not ended are cancelled in the
        same transaction, recursively, unless ``children=False``."""
        error = serde.dumps(
            {"type": "Cancelled", "message": reason or "cancelled"},
            what="cancel reason",
            limit=self.settings.max_output_bytes,
        )
        store = await self._open()
        asked = self.clock.now()
        row = await store.cancel(run_id, error, children=children)
        if row is None:
            raise self._missing(run_id)
        ended_now = row.status == "cancelled" and (row.ended_at or 0.0) >= asked
        if ended_now and observe.wanted(observe.INFO):  # not held by a worker: ended here
            observe.emit("cancelled", observe.INFO, "run %s (%s) cancelled", run_id, row.workflow,
                         args=(run_id, row.workflow), reason=reason or "cancelled")  # fmt: skip
        if row.status not in ENDED_STATUSES or row.status == "cancelled":
            # Leased (flagged in the store), or ended under an attempt whose lease had
            # run out: an execution of it here starts no further step either way.
            self._local.cancel(run_id)
        if row.status == "cancelled":
            self._local.ended(run_id)
        return await self.get_run(run_id)
