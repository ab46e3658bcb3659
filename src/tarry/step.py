"""The step methods: each looks up its memo first, and only on a miss does work.

A step id may repeat (a loop): the n-th repeat is keyed ``id:n``. A step that
must wait asks the store to park the run and then unwinds the handler with
``Suspend``; the run resumes later by replaying the handler from the top, and
every completed step answers from the memo.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Literal, NoReturn

import orjson

from . import conditions, observe, serde, tracing
from .conditions import AnyCondition, check_conditions, describe, new_event, woken
from .durations import Duration, Timeout, check_aware, parse_duration
from .errors import (
    Bail,
    ConfigError,
    ExpressionError,
    LeaseLost,
    StepFailed,
    StoreUnavailable,
)
from .models import (
    Event,
    Message,
    SignalResult,
    WaitKind,
    event_from_json,
    message_from_json,
)
from .names import check_name, child_run_id
from .step_core import error_bytes
from .step_run import RunStep
from .step_tokens import TokenSteps
from .store.base import InvokeWait, NewRun, StepRow, StepSender
from .wait_schema import invalid_error, invalid_from, refused_signal


class Step(TokenSteps, RunStep):
    """``step`` in ``handler(ctx, step)``. Every method takes a step id first."""

    # -- timers ----------------------------------------------------------------------

    async def sleep(self, step_id: str, duration: Duration) -> None:
        """Park the run for ``duration``; no worker holds it meanwhile."""
        seconds = parse_duration(duration)
        await self._wait(step_id, "sleep", self._x.clock.now() + seconds, tuple)

    async def sleep_until(self, step_id: str, when: datetime) -> None:
        """Park the run until ``when``, a timezone-aware datetime."""
        check_aware(when, "sleep_until time")
        await self._wait(step_id, "sleep", when.timestamp(), tuple)

    # -- signals ---------------------------------------------------------------------

    async def wait_for_signal(
        self,
        step_id: str,
        *,
        signal: str,
        timeout: Timeout,
        on_conflict: Literal["fail", "replace"] = "fail",
        schema: object = None,
    ) -> Any:
        """Park until a signal arrives on key ``signal``; its data, or None on timeout.

        With ``schema`` (a pydantic model class or a JSON Schema dict), a signal whose
        data does not fit is refused to its sender, and the wait returns the model's
        instance (for a dict schema, the data)."""
        spec = conditions.signal(signal, on_conflict=on_conflict, schema=schema)
        due = self._deadline(timeout)
        found = await self._wait(
            step_id, "signal", due, lambda: (self._condition(spec),), spec=describe(spec)
        )
        return conditions.typed_value(spec, found)

    async def send_signal(self, step_id: str, signal: str, data: Any = None) -> SignalResult:
        """Send a signal exactly once per run, even when the handler replays."""
        key = self._key(step_id)
        row = await self._memo(key, "send_signal")
        if row is not None and row.status == "completed":
            return SignalResult(**serde.loads(row.output))
        if row is not None and row.status == "failed":
            raise invalid_from(row.error)  # refused by a typed wait: the same error again
        check_name(signal, "signal key")
        payload = serde.dumps(
            {} if data is None else data,
            what=f"data of signal {signal!r}",
            limit=self._x.settings.max_output_bytes,
        )
        await self._x.boundary()
        sender = StepSender(self._x.lease, key, self._x.clock.now(), self._pos[key])
        try:
            self._x.branches.enter()  # a write siblings must not park the run under
            try:
                outcome = await self._x.store.send_signal(
                    signal,
                    payload,
                    strict=False,
                    retention_seconds=self._x.settings.signal_retention,
                    sender=sender,
                    trace=tracing.sent_from(self._x.span),
                )
            finally:
                self._x.branches.leave()
        except (LeaseLost, StoreUnavailable) as exc:
            raise self._x.stop(exc) from None
        if outcome.cancel_requested:
            self._x.request_cancel()
        if outcome.status == "invalid":  # the store kept the step as failed with this
            assert outcome.run_id is not None
            invalid = refused_signal(signal, outcome.run_id, list(outcome.errors))
            self._x.remember(StepRow(key, "send_signal", "failed", None,
                                     invalid_error(invalid), pos=self._pos[key]))  # fmt: skip
            raise invalid
        result = SignalResult(
            "delivered" if outcome.status == "delivered" else "buffered", outcome.run_id
        )
        self._x.remember(
            StepRow(
                key,
                "send_signal",
                "completed",
                orjson.dumps({"status": result.status, "run_id": result.run_id}),
                pos=self._pos[key],
            )
        )
        return result

    # -- events ----------------------------------------------------------------------

    async def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        timeout: Timeout,
        match: str | None = None,
        if_: str | None = None,
        lookback: Duration | None = "run",
    ) -> Event | None:
        """Park until an event named ``event`` matches (``match`` path equal to the
        trigger's, or the CEL ``if_``); the Event, or None on timeout.

        ``lookback="run"`` also takes a matching event received since the run was
        created (not its trigger, not one an earlier wait returned); ``None`` only
        events after the wait began; a duration, events up to that long before."""
        due = self._deadline(timeout)
        try:
            spec = conditions.event(event, match=match, if_=if_, lookback=lookback)
        except (ExpressionError, ConfigError) as exc:
            key = self._key(step_id)
            if await self._memo(key, "event") is None:
                now = self._x.clock.now()
                await self._save(
                    StepRow(
                        key, "event", "failed", None, error_bytes(exc), 1, now, now, self._pos[key]
                    )
                )
            raise
        found = await self._wait(
            step_id, "event", due, lambda: (self._condition(spec),), spec=describe(spec)
        )
        return None if found is None else event_from_json(found)

    # -- mailbox, any, invoke ----------------------------------------------------------

    async def wait_for_message(
        self, step_id: str, *, timeout: Timeout, name: str | None = None, schema: object = None
    ) -> Message | None:
        """The oldest unconsumed message in this run's mailbox (of ``name``, if given,
        leaving others queued), waiting for one; None on timeout.

        With ``schema`` (a pydantic model class or a JSON Schema dict), only a message
        whose data fits: one sent to this wait that does not is refused to its sender,
        one already queued stays queued. The Message's ``data`` is then the model's
        instance (for a dict schema, the data)."""
        spec = conditions.message(name, schema=schema)
        due = self._deadline(timeout)
        found = await self._wait(
            step_id, "message", due, lambda: (self._condition(spec),), spec=describe(spec)
        )
        return None if found is None else conditions.typed_value(spec, message_from_json(found))

    async def wait_for_any(
        self,
        step_id: str,
        conditions: Sequence[AnyCondition],
        *,
        timeout: Timeout,
        count: int = 1,
    ) -> Any:
        """Park on several conditions (``tarry.signal``, ``tarry.event``,
        ``tarry.message``); the first to fire wins and the others are withdrawn in
        the same transaction. ``Woken(index, value)``, or None on timeout.

        ``count=k`` waits for a quorum: each arrival is stored as it comes, and once
        ``k`` have fired the rest are withdrawn in the same transaction; returns
        ``[Woken, ...]`` in arrival order (at the deadline: those that arrived)."""
        check_conditions(conditions, "wait_for_any")
        if (
            isinstance(count, bool)
            or not isinstance(count, int)
            or not 1 <= count <= len(conditions)
        ):
            raise ValueError(
                f"count must be from 1 to {len(conditions)} (the number of conditions), "
                f"got {count!r}"
            )
        if count > 1:
            arrived = await self._gather(step_id, "any", conditions, timeout, count)
            return [woken(conditions, entry) for entry in arrived]
        due = self._deadline(timeout)
        found = await self._wait(
            step_id, "any", due, lambda: tuple(self._condition(c) for c in conditions),
            indexed=True, spec="any of " + "; ".join(describe(c) for c in conditions),
        )  # fmt: skip
        if found is None:
            return None
        return woken(conditions, found)

    async def wait_for_all(
        self, step_id: str, conditions: Sequence[AnyCondition], *, timeout: Timeout
    ) -> list[Any]:
        """Park until every condition has fired; each arrival is stored as it comes
        (a crash loses none). The values in the order of ``conditions``; at the
        deadline, those that arrived and None for the rest."""
        check_conditions(conditions, "wait_for_all")
        arrived = await self._gather(step_id, "all", conditions, timeout, len(conditions))
        values: list[Any] = [None] * len(conditions)
        for entry in arrived:
            values[entry["index"]] = woken(conditions, entry).value
        return values

    async def parallel(self, *branches: Callable[[], Awaitable[Any]]) -> list[Any]:
        """Run ``branches`` (functions returning awaitables of step calls) side by
        side, as ``asyncio.gather`` would: their results in order."""
        return list(await asyncio.gather(*(branch() for branch in branches)))

    async def _gather(
        self,
        step_id: str,
        kind: WaitKind,
        conditions: Sequence[AnyCondition],
        timeout: Timeout,
        need: int,
    ) -> list[dict[str, Any]]:
        due = self._deadline(timeout)
        spec = f"{kind} {need} of " + "; ".join(describe(c) for c in conditions)
        found = await self._wait(
            step_id, kind, due, lambda: tuple(self._condition(c) for c in conditions),
            indexed=True, spec=spec, need=need,
        )  # fmt: skip
        return list(found or [])

    async def invoke(
        self, step_id: str, workflow: str, payload: Any = None, *, timeout: Timeout = None
    ) -> Any:
        """Start a child run of ``workflow`` and park until it ends: its output, or
        ``StepFailed`` if it failed, was cancelled or did not end within ``timeout``.
        The child's id derives from this run and step, so replay never starts two."""
        check_name(workflow, "workflow id")
        due = self._deadline(timeout)
        key = self._peek_key(step_id)
        child_id = child_run_id(self._x.run.id, key)
        data = serde.dumps(
            {} if payload is None else payload,
            what=f"payload of step {key!r}",
            limit=self._x.settings.max_output_bytes,
        )
        child = NewRun(
            child_id, workflow, data, parent=self._x.run.id, version=self._x.version_of(workflow),
            trace=tracing.sent_from(self._x.span),
        )  # fmt: skip

        def start() -> tuple[InvokeWait]:
            if key not in self._x.memo and observe.wanted(observe.INFO):  # its first start
                observe.emit("started", observe.INFO, "run %s (%s) started by invoke",
                             child_id, workflow, args=(child_id, workflow), by="invoke",
                             parent=self._x.run.id)  # fmt: skip
            return (InvokeWait(child),)

        ended = await self._wait(step_id, "invoke", due, start, spec=f"invoke {workflow!r}")
        if ended is None:
            raise StepFailed(key, f"child run {child_id!r} did not end within {timeout!r}")
        if ended["status"] != "completed":
            error = ended.get("error") or {}
            raise StepFailed(
                key, f"child run {child_id!r} {ended['status']}: {error.get('message', error)}"
            )
        return ended["output"]

    async def send_event(self, step_id: str, name: str, data: Any = None) -> list[str]:
        """Send an event exactly once per run; returns its event ids."""
        key = self._key(step_id)
        row = await self._memo(key, "send_event")
        if row is not None and row.status == "completed":
            ids: list[str] = serde.loads(row.output)
            return ids
        new = new_event(
            name, data, None, limit=self._x.settings.max_output_bytes, now=self._x.clock.now(),
            trace=tracing.sent_from(self._x.span),
        )  # fmt: skip
        await self._x.boundary()
        sender = StepSender(self._x.lease, key, self._x.clock.now(), self._pos[key])
        try:
            self._x.branches.enter()
            try:
                outcome = await self._x.store.send_event(
                    new, dedupe_seconds=self._x.settings.event_dedupe, sender=sender
                )
            finally:
                self._x.branches.leave()
        except (LeaseLost, StoreUnavailable) as exc:
            raise self._x.stop(exc) from None
        if outcome.cancel_requested:
            self._x.request_cancel()
        for run_id in outcome.cancelled:  # by their cancel_on, at once
            self._x.local.ended(run_id)
        output = orjson.dumps([outcome.event_id])
        self._x.remember(StepRow(key, "send_event", "completed", output, pos=self._pos[key]))
        return [outcome.event_id]

    # -- ending ----------------------------------------------------------------------

    def bail(self, reason: str) -> NoReturn:
        """End the run now as cancelled with ``reason``; no retry."""
        raise Bail(str(reason))
