"""The step methods: each looks up its memo first, and only on a miss does work.

A step id may repeat (a loop): the n-th repeat is keyed ``id:n``. A step that
must wait asks the store to park the run and then unwinds the handler with
``Suspend``; the run resumes later by replaying the handler from the top, and
every completed step answers from the memo.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import orjson

from . import conditions, serde
from .conditions import AnyCondition, EventWaitCondition, MessageCondition, new_event
from .durations import Duration, Timeout, check_aware, deadline, parse_duration
from .errors import (
    Bail,
    ConfigError,
    ExpressionError,
    LeaseLost,
    NonDeterminismError,
    NonRetriableError,
    RetryAfter,
    SignalConflict,
    StepFailed,
    StoreError,
    Suspend,
)
from .models import Event, Message, SignalResult, Woken, event_from_json, message_from_json
from .store.base import EventWait, NewRun, StepRow, StepSender, WaitCondition, WaitSpec
from .store.matching import resolve_filing

if TYPE_CHECKING:
    from .executor import Execution

log = logging.getLogger("tarry")


def _stop(execution: Execution, exc: Exception) -> Suspend:
    """This attempt cannot write any more: its lease was taken over, or the store is
    unreachable past its retries. Either way the run stays as stored, and its lease
    (when it expires) hands it to a worker that can carry on."""
    if isinstance(exc, StoreError):
        log.warning("run %s: stopping this attempt: %s", execution.run.id, exc)
    return Suspend(str(exc))


def _error(exc: BaseException | str, kind: str | None = None) -> bytes:
    message = exc if isinstance(exc, str) else str(exc) or type(exc).__name__
    name = kind or (type(exc).__name__ if isinstance(exc, BaseException) else "Error")
    return orjson.dumps({"type": name, "message": message})


def _error_message(row: StepRow) -> tuple[str, str]:
    info = serde.loads(row.error) or {}
    return str(info.get("type", "Error")), str(info.get("message", "step failed"))


def _waiting_key(conds: tuple[WaitCondition, ...]) -> str | None:
    """The key, event name or message name shown for a single-condition wait."""
    if len(conds) != 1:
        return None
    cond = conds[0]
    key: str | None = cond.event.filing.event if cond.event is not None else cond.key
    return key


class Step:
    """``step`` in ``handler(ctx, step)``. Every method takes a step id first."""

    def __init__(self, execution: Execution) -> None:
        self._x = execution
        self._seen: dict[str, int] = {}
        self._count = 0

    # -- bookkeeping ---------------------------------------------------------------

    def _key(self, step_id: str) -> str:
        if not isinstance(step_id, str) or not step_id:
            raise ValueError(f"step id must be a non-empty string, got {step_id!r}")
        key = self._peek_key(step_id)
        self._seen[step_id] = self._seen.get(step_id, 0) + 1
        self._count += 1
        return key

    async def _memo(self, key: str, kind: str) -> StepRow | None:
        if self._count > self._x.app.max_steps:
            message = (
                f"the run reached step {key!r}, past its limit of {self._x.app.max_steps:,} "
                "steps (App(max_steps=...)); a loop that never ends, or a workflow that "
                "should start child runs with step.invoke"
            )
            await self._x.end("failed", error=_error(message, "StepLimitExceeded"))
            raise Suspend("step limit")
        row = self._x.memo.get(key)
        if row is not None and row.kind != kind:
            message = (
                f"step {key!r} was stored as a {row.kind!r} step but the workflow code now "
                f"asks for a {kind!r} step there; the code changed under a run in flight"
            )
            await self._x.end("failed", error=_error(message, "NonDeterminismError"))
            raise NonDeterminismError(message)
        return row

    async def _boundary(self) -> None:
        """A step is about to do work: honour a cancellation requested meanwhile."""
        if self._x.cancel_requested:
            await self._x.honor_cancel()
            raise Suspend("cancelled")

    async def _save(self, row: StepRow) -> None:
        try:
            cancel = await self._x.store.save_step(self._x.lease, row)
        except (LeaseLost, StoreError) as exc:
            raise _stop(self._x, exc) from None
        self._x.memo[row.key] = row
        self._x.cancel_requested |= cancel

    # -- run -------------------------------------------------------------------------

    async def run(self, step_id: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` once, memoized and retried per the workflow's ``retries``."""
        key = self._key(step_id)
        row = await self._memo(key, "run")
        attempt = 1
        if row is not None:
            if row.status == "completed":
                return serde.loads(row.output)
            if row.status == "failed":
                raise StepFailed(key, _error_message(row)[1])
            attempt = row.attempts + 1
        await self._boundary()
        self._x.ctx.attempt = attempt
        started = time.time()
        try:
            if inspect.iscoroutinefunction(fn):
                result = await fn(*args, **kwargs)
            else:
                result = await asyncio.to_thread(fn, *args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
        except NonRetriableError as exc:
            return await self._fail(key, attempt, started, exc)
        except Exception as exc:
            delay = self._retry_delay(exc, attempt)
            if delay is None:
                return await self._fail(key, attempt, started, exc)
            failed = StepRow(
                key, "run", "retrying", None, _error(exc), attempt, started, time.time()
            )
            self._x.releasing = True
            with contextlib.suppress(LeaseLost, StoreError):  # the lease decides what is next
                await self._x.store.retry_step(self._x.lease, failed, time.time() + delay)
            raise Suspend("retrying") from None
        try:
            output = serde.dumps(
                result, what=f"output of step {key!r}", limit=self._x.app.max_output_bytes
            )
        except serde.SerializationError as exc:
            return await self._fail(key, attempt, started, exc)
        await self._save(
            StepRow(key, "run", "completed", output, None, attempt, started, time.time())
        )
        return serde.loads(output)

    def _retry_delay(self, exc: Exception, attempt: int) -> float | None:
        if attempt > self._x.retries:
            return None
        if isinstance(exc, RetryAfter):
            return parse_duration(exc.delay)
        app = self._x.app
        ceiling = min(app.retry_cap, app.retry_base * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    async def _fail(self, key: str, attempt: int, started: float, exc: Exception) -> NoReturn:
        await self._save(
            StepRow(key, "run", "failed", None, _error(exc), attempt, started, time.time())
        )
        raise StepFailed(key, str(exc) or type(exc).__name__)

    # -- timers ----------------------------------------------------------------------

    async def sleep(self, step_id: str, duration: Duration) -> None:
        """Park the run for ``duration``; no worker holds it meanwhile."""
        seconds = parse_duration(duration)
        await self._wait(step_id, "sleep", time.time() + seconds, ())

    async def sleep_until(self, step_id: str, when: datetime) -> None:
        """Park the run until ``when``, a timezone-aware datetime."""
        check_aware(when, "sleep_until time")
        await self._wait(step_id, "sleep", when.timestamp(), ())

    # -- signals ---------------------------------------------------------------------

    async def wait_for_signal(
        self,
        step_id: str,
        *,
        signal: str,
        timeout: Timeout,
        on_conflict: Literal["fail", "replace"] = "fail",
    ) -> Any:
        """Park until a signal arrives on key ``signal``; its data, or None on timeout."""
        cond = self._condition(conditions.signal(signal, on_conflict=on_conflict))
        return await self._wait(step_id, "signal", deadline(timeout), (cond,))

    async def send_signal(self, step_id: str, signal: str, data: Any = None) -> SignalResult:
        """Send a signal exactly once per run, even when the handler replays."""
        key = self._key(step_id)
        row = await self._memo(key, "send_signal")
        if row is not None and row.status == "completed":
            return SignalResult(**serde.loads(row.output))
        if not isinstance(signal, str) or not signal:
            raise ValueError(f"signal key must be a non-empty string, got {signal!r}")
        payload = serde.dumps({} if data is None else data, what=f"data of signal {signal!r}")
        await self._boundary()
        sender = StepSender(self._x.lease, key, time.time())
        try:
            outcome = await self._x.store.send_signal(
                signal,
                payload,
                strict=False,
                retention_seconds=self._x.app.signal_retention,
                sender=sender,
            )
        except (LeaseLost, StoreError) as exc:
            raise _stop(self._x, exc) from None
        result = SignalResult(
            "delivered" if outcome.status == "delivered" else "buffered", outcome.run_id
        )
        self._x.memo[key] = StepRow(
            key,
            "send_signal",
            "completed",
            orjson.dumps({"status": result.status, "run_id": result.run_id}),
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
        due = deadline(timeout)
        try:
            spec = conditions.event(event, match=match, if_=if_, lookback=lookback)
        except (ExpressionError, ConfigError) as exc:
            key = self._key(step_id)
            if await self._memo(key, "event") is None:
                now = time.time()
                await self._save(StepRow(key, "event", "failed", None, _error(exc), 1, now, now))
            raise
        found = await self._wait(step_id, "event", due, (self._condition(spec),))
        return None if found is None else event_from_json(found)

    # -- mailbox, any, invoke ----------------------------------------------------------

    async def wait_for_message(
        self, step_id: str, *, timeout: Timeout, name: str | None = None
    ) -> Message | None:
        """The oldest unconsumed message in this run's mailbox (of ``name``, if given,
        leaving others queued), waiting for one; None on timeout."""
        cond = self._condition(conditions.message(name))
        found = await self._wait(step_id, "message", deadline(timeout), (cond,))
        return None if found is None else message_from_json(found)

    async def wait_for_any(
        self, step_id: str, conditions: Sequence[AnyCondition], *, timeout: Timeout
    ) -> Woken | None:
        """Park on several conditions (``tarry.signal``, ``tarry.event``,
        ``tarry.message``); the first to fire wins and the others are withdrawn in
        the same transaction. ``Woken(index, value)``, or None on timeout."""
        if not conditions:
            raise ValueError("wait_for_any needs at least one condition")
        due = deadline(timeout)
        conds = tuple(self._condition(c) for c in conditions)
        found = await self._wait(step_id, "any", due, conds, indexed=True)
        if found is None:
            return None
        index, value = found["index"], found["value"]
        chosen = conditions[index]
        if isinstance(chosen, EventWaitCondition):
            value = event_from_json(value)
        elif isinstance(chosen, MessageCondition):
            value = message_from_json(value)
        return Woken(index, value)

    async def invoke(
        self, step_id: str, workflow: str, payload: Any = None, *, timeout: Timeout = None
    ) -> Any:
        """Start a child run of ``workflow`` and park until it ends: its output, or
        ``StepFailed`` if it failed, was cancelled or did not end within ``timeout``.
        The child's id derives from this run and step, so replay never starts two."""
        if not isinstance(workflow, str) or not workflow:
            raise ValueError(f"workflow id must be a non-empty string, got {workflow!r}")
        due = deadline(timeout)
        key = self._peek_key(step_id)
        child_id = f"{self._x.run.id}.{key}"
        data = serde.dumps({} if payload is None else payload, what=f"payload of step {key!r}")
        child = NewRun(child_id, workflow, data, parent=self._x.run.id)
        cond = WaitCondition("invoke", key=child_id, child=child)
        ended = await self._wait(step_id, "invoke", due, (cond,))
        if ended is None:
            raise StepFailed(key, f"child run {child_id!r} did not end within {timeout!r}")
        if ended["status"] != "completed":
            error = ended.get("error") or {}
            raise StepFailed(
                key, f"child run {child_id!r} {ended['status']}: {error.get('message', error)}"
            )
        return ended["output"]

    def _peek_key(self, step_id: str) -> str:
        """The key the next call with ``step_id`` will get, without taking it."""
        n = self._seen.get(step_id, 0) if isinstance(step_id, str) else 0
        return step_id if n == 0 else f"{step_id}:{n}"

    def _condition(self, spec: AnyCondition) -> WaitCondition:
        if isinstance(spec, conditions.SignalCondition):
            on_conflict: Literal["fail", "replace"] = (
                "replace" if spec.on_conflict == "replace" else "fail"
            )
            return WaitCondition("signal", key=spec.key, on_conflict=on_conflict)
        if isinstance(spec, EventWaitCondition):
            filing = resolve_filing(spec.condition.filing(), self._x.trigger)
            since = self._lookback_start(spec.lookback)
            return WaitCondition("event", event=EventWait(filing, since, self._seen_events()))
        if isinstance(spec, MessageCondition):
            return WaitCondition("message", key=spec.name)
        raise TypeError(
            "wait conditions are built with tarry.signal(...), tarry.event(...) or "
            f"tarry.message(...), got {spec!r}"
        )

    def _lookback_start(self, lookback: Duration | None) -> float | None:
        if lookback is None:
            return None
        if lookback == "run":
            return self._x.run.created_at
        return time.time() - parse_duration(lookback)

    def _seen_events(self) -> tuple[str, ...]:
        """Event ids this run must not match again: its trigger, and every event an
        earlier wait of the run already returned."""
        seen = [self._x.trigger["id"]] if "id" in self._x.trigger else []
        for row in self._x.memo.values():
            if row.status != "completed" or not row.output:
                continue
            if row.kind == "event":
                seen.append(serde.loads(row.output)["id"])
            elif row.kind == "any":
                value = serde.loads(row.output)["value"]
                if isinstance(value, dict) and "ts" in value and "id" in value:
                    seen.append(value["id"])
        return tuple(seen)

    async def send_event(self, step_id: str, name: str, data: Any = None) -> list[str]:
        """Send an event exactly once per run; returns its event ids."""
        key = self._key(step_id)
        row = await self._memo(key, "send_event")
        if row is not None and row.status == "completed":
            ids: list[str] = serde.loads(row.output)
            return ids
        new = new_event(name, data, None)
        await self._boundary()
        sender = StepSender(self._x.lease, key, time.time())
        try:
            outcome = await self._x.store.send_event(
                new, dedupe_seconds=self._x.app.event_dedupe, sender=sender
            )
        except (LeaseLost, StoreError) as exc:
            raise _stop(self._x, exc) from None
        output = orjson.dumps([outcome.event_id])
        self._x.memo[key] = StepRow(key, "send_event", "completed", output)
        return [outcome.event_id]

    # -- the shared wait path ----------------------------------------------------------

    async def _wait(
        self,
        step_id: str,
        kind: str,
        due: float | None,
        conds: tuple[WaitCondition, ...],
        *,
        indexed: bool = False,
    ) -> Any:
        key = self._key(step_id)
        row = await self._memo(key, kind)
        if row is not None and row.status != "waiting":
            return self._answer(key, row)
        await self._boundary()
        waiting_for = {"kind": kind, "step": key, "key": _waiting_key(conds), "expires_at": due}
        spec = WaitSpec(
            key, kind, due, orjson.dumps(waiting_for), conds, indexed, started_at=time.time()
        )
        self._x.releasing = True
        try:
            parked = await self._x.store.park(self._x.lease, spec)
        except (LeaseLost, StoreError) as exc:
            raise _stop(self._x, exc) from None
        if parked.outcome == "parked":
            raise Suspend("parked")
        self._x.releasing = False
        assert parked.step is not None
        self._x.memo[key] = parked.step
        return self._answer(key, parked.step)

    def _answer(self, key: str, row: StepRow) -> Any:
        if row.status in ("completed", "timed_out", "cancelled"):
            return serde.loads(row.output)
        kind, message = _error_message(row)
        if kind == "SignalConflict":
            raise SignalConflict(message)
        if kind == "ExpressionError":
            raise ExpressionError(message)
        raise StepFailed(key, message)

    # -- ending ----------------------------------------------------------------------

    def bail(self, reason: str) -> NoReturn:
        """End the run now as cancelled with ``reason``; no retry."""
        raise Bail(str(reason))
