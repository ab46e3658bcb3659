"""The step methods: each looks up its memo first, and only on a miss does work.

A step id may repeat (a loop): the n-th repeat is keyed ``id:n``. A step that
must wait asks the store to park the run and then unwinds the handler with
``Suspend``; the run resumes later by replaying the handler from the top, and
every completed step answers from the memo.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import random
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal, NoReturn

import orjson

from . import conditions, serde
from .attempt import Attempt
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
    StoreUnavailable,
    Suspend,
)
from .models import (
    Event,
    Message,
    SignalResult,
    StepKind,
    WaitKind,
    Woken,
    event_from_json,
    message_from_json,
)
from .names import check_name, child_run_id
from .store.base import InvokeWait, NewRun, StepRow, StepSender, WaitCondition, WaitSpec
from .tracebacks import format_bounded


def _error(exc: BaseException | str, kind: str | None = None) -> bytes:
    message = exc if isinstance(exc, str) else str(exc) or type(exc).__name__
    name = kind or (type(exc).__name__ if isinstance(exc, BaseException) else "Error")
    return orjson.dumps({"type": name, "message": message})


def _attempt_error(exc: BaseException) -> bytes:
    """A failed attempt as stored: its error with its traceback."""
    message = str(exc) or type(exc).__name__
    return orjson.dumps(
        {"type": type(exc).__name__, "message": message, "traceback": format_bounded(exc)}
    )


def _error_message(row: StepRow) -> tuple[str, str]:
    info = serde.loads(row.error) or {}
    return str(info.get("type", "Error")), str(info.get("message", "step failed"))


def _spell(step_id: str, repeat: int) -> str:
    """The key of the ``repeat``-th use of ``step_id`` in a run: ``id``, ``id:1``, ..."""
    return step_id if repeat == 0 else f"{step_id}:{repeat}"


class Step:
    """``step`` in ``handler(ctx, step)``. Every method takes a step id first."""

    def __init__(self, attempt: Attempt) -> None:
        self._x = attempt
        self._seen: dict[str, int] = {}
        self._count = 0
        self._pos: dict[str, int] = {}
        """Each key's place in the run: the n-th step the handler reached."""

    # -- bookkeeping ---------------------------------------------------------------

    def _key(self, step_id: str) -> str:
        seen = self._seen.get(step_id) if type(step_id) is str else None
        if seen is None:  # a repeat (a loop) was checked the first time
            check_name(step_id, "step id")
            seen = 0
        key = _spell(step_id, seen)
        self._seen[step_id] = seen + 1
        self._count += 1
        self._pos[key] = self._count
        return key

    async def _memo(self, key: str, kind: StepKind) -> StepRow | None:
        if self._count > self._x.settings.max_steps:
            message = (
                f"the run reached step {key!r}, past its limit of {self._x.settings.max_steps:,} "
                "steps (App(max_steps=...)); a loop that never ends, or a workflow that "
                "should start child runs with step.invoke"
            )
            await self._x.end("failed", error=_error(message, "StepLimitExceeded"))
            raise Suspend("step limit")
        row = self._x.memo.get(key)
        limit = self._x.settings.max_history_bytes
        if row is None and self._x.history_bytes > limit:
            message = (
                f"the run reached step {key!r} with {self._x.history_bytes:,} bytes of step "
                f"results stored, past its limit of {limit:,} (App(max_history_bytes=...)); "
                "keep large data outside tarry and pass references, or split the work into "
                "child runs with step.invoke"
            )
            await self._x.end("failed", error=_error(message, "HistoryLimitExceeded"))
            raise Suspend("history limit")
        if row is not None and row.kind != kind:
            message = (
                f"step {key!r} was stored as a {row.kind!r} step but the workflow code now "
                f"asks for a {kind!r} step there; the code changed under a run in flight"
            )
            await self._x.end("failed", error=_error(message, "NonDeterminismError"))
            raise NonDeterminismError(message)
        return row

    async def _save(self, row: StepRow) -> None:
        try:
            cancel = await self._x.store.save_step(self._x.lease, row)
        except (LeaseLost, StoreUnavailable) as exc:
            raise self._x.stop(exc) from None
        self._x.remember(row)
        if cancel:
            self._x.request_cancel()

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
        await self._x.boundary()
        self._x.ctx.attempt = attempt
        clock = self._x.clock
        started = clock.now()
        fn = self._x.doubles.get(step_id, fn)
        try:
            if inspect.iscoroutinefunction(fn):
                result = await fn(*args, **kwargs)
            else:
                # In the worker's pool, sized to its concurrency (not asyncio's default).
                call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
                result = await asyncio.get_running_loop().run_in_executor(self._x.threads, call)
                if inspect.isawaitable(result):
                    result = await result
        except NonRetriableError as exc:
            return await self._fail(key, attempt, started, exc)
        except Exception as exc:
            delay = self._retry_delay(exc, attempt)
            if delay is None:
                return await self._fail(key, attempt, started, exc)
            failed = StepRow(
                key,
                "run",
                "retrying",
                None,
                _attempt_error(exc),
                attempt,
                started,
                clock.now(),
                self._pos[key],
            )
            self._x.releasing = True
            cancelled = False
            with contextlib.suppress(LeaseLost, StoreUnavailable):  # the lease decides what is next
                cancelled = await self._x.store.retry_step(
                    self._x.lease, failed, clock.now() + delay
                )
            if cancelled:  # a pending cancel ended the run instead
                self._x.ended()
            self._x.over = True
            raise Suspend("cancelled" if cancelled else "retrying") from None
        try:
            output = serde.dumps(
                result, what=f"output of step {key!r}", limit=self._x.settings.max_output_bytes
            )
        except serde.SerializationError as exc:
            return await self._fail(key, attempt, started, exc)
        await self._save(
            StepRow(
                key,
                "run",
                "completed",
                output,
                None,
                attempt,
                started,
                clock.now(),
                self._pos[key],
            )
        )
        return serde.loads(output)

    def _retry_delay(self, exc: Exception, attempt: int) -> float | None:
        if attempt > self._x.retries:
            return None
        if isinstance(exc, RetryAfter):
            return parse_duration(exc.delay)
        settings = self._x.settings
        ceiling = min(settings.retry_cap, settings.retry_base * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    async def _fail(self, key: str, attempt: int, started: float, exc: Exception) -> NoReturn:
        await self._save(
            StepRow(
                key,
                "run",
                "failed",
                None,
                _attempt_error(exc),
                attempt,
                started,
                self._x.clock.now(),
                self._pos[key],
            )
        )
        raise StepFailed(key, str(exc) or type(exc).__name__)

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
    ) -> Any:
        """Park until a signal arrives on key ``signal``; its data, or None on timeout."""
        spec = conditions.signal(signal, on_conflict=on_conflict)
        due = self._deadline(timeout)
        return await self._wait(step_id, "signal", due, lambda: (self._condition(spec),))

    async def send_signal(self, step_id: str, signal: str, data: Any = None) -> SignalResult:
        """Send a signal exactly once per run, even when the handler replays."""
        key = self._key(step_id)
        row = await self._memo(key, "send_signal")
        if row is not None and row.status == "completed":
            return SignalResult(**serde.loads(row.output))
        check_name(signal, "signal key")
        payload = serde.dumps(
            {} if data is None else data,
            what=f"data of signal {signal!r}",
            limit=self._x.settings.max_output_bytes,
        )
        await self._x.boundary()
        sender = StepSender(self._x.lease, key, self._x.clock.now(), self._pos[key])
        try:
            outcome = await self._x.store.send_signal(
                signal,
                payload,
                strict=False,
                retention_seconds=self._x.settings.signal_retention,
                sender=sender,
            )
        except (LeaseLost, StoreUnavailable) as exc:
            raise self._x.stop(exc) from None
        if outcome.cancel_requested:
            self._x.request_cancel()
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
                    StepRow(key, "event", "failed", None, _error(exc), 1, now, now, self._pos[key])
                )
            raise
        found = await self._wait(step_id, "event", due, lambda: (self._condition(spec),))
        return None if found is None else event_from_json(found)

    # -- mailbox, any, invoke ----------------------------------------------------------

    async def wait_for_message(
        self, step_id: str, *, timeout: Timeout, name: str | None = None
    ) -> Message | None:
        """The oldest unconsumed message in this run's mailbox (of ``name``, if given,
        leaving others queued), waiting for one; None on timeout."""
        spec = conditions.message(name)
        due = self._deadline(timeout)
        found = await self._wait(step_id, "message", due, lambda: (self._condition(spec),))
        return None if found is None else message_from_json(found)

    async def wait_for_any(
        self, step_id: str, conditions: Sequence[AnyCondition], *, timeout: Timeout
    ) -> Woken | None:
        """Park on several conditions (``tarry.signal``, ``tarry.event``,
        ``tarry.message``); the first to fire wins and the others are withdrawn in
        the same transaction. ``Woken(index, value)``, or None on timeout."""
        if not conditions:
            raise ValueError("wait_for_any needs at least one condition")
        due = self._deadline(timeout)
        found = await self._wait(
            step_id, "any", due, lambda: tuple(self._condition(c) for c in conditions), indexed=True
        )
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
        check_name(workflow, "workflow id")
        due = self._deadline(timeout)
        key = self._peek_key(step_id)
        child_id = child_run_id(self._x.run.id, key)
        data = serde.dumps(
            {} if payload is None else payload,
            what=f"payload of step {key!r}",
            limit=self._x.settings.max_output_bytes,
        )
        child = NewRun(child_id, workflow, data, parent=self._x.run.id)
        ended = await self._wait(step_id, "invoke", due, lambda: (InvokeWait(child),))
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
        return _spell(step_id, self._seen.get(step_id, 0) if isinstance(step_id, str) else 0)

    def _deadline(self, timeout: Timeout) -> float | None:
        return deadline(timeout, self._x.clock.now())

    def _condition(self, spec: AnyCondition) -> WaitCondition:
        x = self._x
        return conditions.to_wait(spec, x.trigger, x.run.created_at, x.clock.now(), x.memo)

    async def send_event(self, step_id: str, name: str, data: Any = None) -> list[str]:
        """Send an event exactly once per run; returns its event ids."""
        key = self._key(step_id)
        row = await self._memo(key, "send_event")
        if row is not None and row.status == "completed":
            ids: list[str] = serde.loads(row.output)
            return ids
        new = new_event(
            name, data, None, limit=self._x.settings.max_output_bytes, now=self._x.clock.now()
        )
        await self._x.boundary()
        sender = StepSender(self._x.lease, key, self._x.clock.now(), self._pos[key])
        try:
            outcome = await self._x.store.send_event(
                new, dedupe_seconds=self._x.settings.event_dedupe, sender=sender
            )
        except (LeaseLost, StoreUnavailable) as exc:
            raise self._x.stop(exc) from None
        if outcome.cancel_requested:
            self._x.request_cancel()
        for run_id in outcome.cancelled:  # by their cancel_on, at once
            self._x.local.ended(run_id)
        output = orjson.dumps([outcome.event_id])
        self._x.remember(StepRow(key, "send_event", "completed", output, pos=self._pos[key]))
        return [outcome.event_id]

    # -- the shared wait path ----------------------------------------------------------

    async def _wait(
        self,
        step_id: str,
        kind: WaitKind,
        due: float | None,
        build: Callable[[], tuple[WaitCondition, ...]],
        *,
        indexed: bool = False,
    ) -> Any:
        """Answer from the memo, else park on the conditions ``build`` makes: built only
        then, since a condition may read the whole memo (the events already seen), and
        a replay must not pay that for every wait it passes."""
        key = self._key(step_id)
        row = await self._memo(key, kind)
        if row is not None and row.status != "waiting":
            return self._answer(key, row)
        await self._x.boundary()
        conds = build()
        waiting_for = {
            "kind": kind,
            "step": key,
            "key": conditions.waiting_key(conds),
            "expires_at": due,
        }
        spec = WaitSpec(
            key,
            kind,
            due,
            orjson.dumps(waiting_for),
            conds,
            indexed,
            self._x.clock.now(),
            self._pos[key],
        )
        self._x.releasing = True
        try:
            parked = await self._x.store.park(self._x.lease, spec)
        except (LeaseLost, StoreUnavailable) as exc:
            raise self._x.stop(exc) from None
        if parked.outcome == "parked":
            self._x.over = True
            raise Suspend("parked")
        if parked.outcome == "cancelled":  # a pending cancel ended the run instead
            self._x.ended()
            raise Suspend("cancelled")
        self._x.releasing = False
        assert parked.step is not None
        self._x.remember(parked.step)
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
