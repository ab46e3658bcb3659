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
import types
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Literal, NoReturn

import orjson

from . import conditions, observe, serde
from .conditions import AnyCondition, check_conditions, describe, new_event, woken
from .durations import Duration, Timeout, check_aware, parse_duration
from .errors import (
    Bail,
    ConfigError,
    ExpressionError,
    LeaseLost,
    NonRetriableError,
    RetryAfter,
    StepFailed,
    StoreUnavailable,
    Suspend,
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
from .step_core import (
    INSIDE_STEP,
    StepCore,
    attempt_error,
    error_bytes,
    error_message,
)
from .step_threads import StepThreads
from .store.base import InvokeWait, NewRun, StepRow, StepSender, WaitSpec


class _Done:
    """A step attempt's stored result."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _is_async(fn: Callable[..., Any]) -> bool:
    """``inspect.iscoroutinefunction``, answered at once for a plain function."""
    if type(fn) is types.FunctionType:
        return bool(fn.__code__.co_flags & inspect.CO_COROUTINE)
    return inspect.iscoroutinefunction(fn)


class Step(StepCore):
    """``step`` in ``handler(ctx, step)``. Every method takes a step id first."""

    # -- run -------------------------------------------------------------------------

    async def run(self, step_id: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` once, memoized and retried per the workflow's ``retries``."""
        key = self._key(step_id)
        row = None if self._new(key) else await self._memo(key, "run")
        attempt = 1
        if row is not None:
            if row.status == "completed":
                return serde.loads(row.output)
            if row.status == "failed":
                raise StepFailed(key, error_message(row)[1])
            attempt = row.attempts + 1
            if row.due_at is not None and row.due_at > self._x.clock.now():
                await self._backoff(key, row.due_at)  # retried beside siblings: not yet due
        await self._x.boundary()
        fn = self._x.doubles.get(step_id, fn)
        branches = self._x.branches
        while True:
            branches.enter()
            try:
                due = await self._attempt(key, attempt, fn, args, kwargs)
            finally:
                branches.leave()
            if isinstance(due, _Done):
                return due.value
            await self._backoff(key, due)
            await self._x.boundary()
            attempt += 1

    async def _attempt(
        self, key: str, attempt: int, fn: Callable[..., Any], args: Any, kwargs: Any
    ) -> _Done | float:
        """One attempt of a step's function: its stored result (``_Done``), or when to
        try again beside siblings still at work (the result is stored as retrying)."""
        self._x.ctx.attempt = attempt
        clock = self._x.clock
        started = clock.now()
        inside = INSIDE_STEP.set(key)  # a step method called from fn is refused
        try:
            if _is_async(fn):
                result = await fn(*args, **kwargs)
            else:
                # In the worker's pool, sized to its concurrency (not asyncio's default).
                call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
                threads = self._x.threads
                if isinstance(threads, StepThreads):
                    result = await threads.call(call)
                else:
                    result = await asyncio.get_running_loop().run_in_executor(threads, call)
                if inspect.isawaitable(result):
                    result = await result
        except NonRetriableError as exc:
            return await self._fail(key, attempt, started, exc)
        except Exception as exc:
            delay = self._retry_delay(exc, attempt)
            if delay is None:
                return await self._fail(key, attempt, started, exc)
            due = clock.now() + delay
            if observe.wanted(observe.INFO):
                observe.step_retrying(self._x.run, key, attempt, exc, delay)
            failed = StepRow(
                key, "run", "retrying", None, attempt_error(exc), attempt, started,
                clock.now(), self._pos[key],
            )  # fmt: skip
            if not self._x.branches.alone():
                # Siblings are at work: keep the lease, wait beside them (parked with
                # them if they park), rather than give the run up under their feet.
                failed.due_at = due
                await self._save(failed)
                return due
            self._x.releasing = True
            cancelled = False
            with contextlib.suppress(LeaseLost, StoreUnavailable):  # the lease decides what is next
                cancelled = await self._x.store.retry_step(self._x.lease, failed, due)
            if cancelled:  # a pending cancel ended the run instead
                self._x.ended()
            self._x.over = True
            raise Suspend("cancelled" if cancelled else "retrying") from None
        finally:
            INSIDE_STEP.reset(inside)
        try:
            output = serde.dumps(
                result, what=f"output of step {key!r}", limit=self._x.settings.max_output_bytes
            )
        except serde.SerializationError as exc:
            return await self._fail(key, attempt, started, exc)
        done = StepRow(key, "run", "completed", output, None, attempt, started, clock.now())
        done.pos = self._pos[key]
        x = self._x
        try:  # _save, inlined on the hottest path
            cancel = await x.store.save_step(x.lease, done)
        except (LeaseLost, StoreUnavailable) as exc:
            raise x.stop(exc) from None
        x.remember(done)
        if cancel:
            x.request_cancel()
        if x.debug:
            took = (done.ended_at or started) - started
            observe.step_completed(self._x.run, key, attempt, took)
        return _Done(serde.loads(output))

    async def _backoff(self, key: str, due: float) -> None:
        """Wait, beside the run's other branches, until a retry of ``key`` is due."""
        shown = {"kind": "retry", "step": key, "key": None, "expires_at": due}
        wait = WaitSpec(key, "sleep", due, orjson.dumps(shown), (), False, None, self._pos[key])
        await self._x.branches.park(wait, stored=True)

    def _retry_delay(self, exc: Exception, attempt: int) -> float | None:
        if attempt > self._x.retries:
            return None
        if isinstance(exc, RetryAfter):
            return parse_duration(exc.delay)
        settings = self._x.settings
        ceiling = min(settings.retry_cap, settings.retry_base * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    async def _fail(self, key: str, attempt: int, started: float, exc: Exception) -> NoReturn:
        if observe.wanted(observe.WARNING):
            observe.step_failed(self._x.run, key, attempt, exc)
        await self._save(
            StepRow(
                key,
                "run",
                "failed",
                None,
                attempt_error(exc),
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
        return await self._wait(
            step_id, "signal", due, lambda: (self._condition(spec),), spec=describe(spec)
        )

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
            self._x.branches.enter()  # a write siblings must not park the run under
            try:
                outcome = await self._x.store.send_signal(
                    signal,
                    payload,
                    strict=False,
                    retention_seconds=self._x.settings.signal_retention,
                    sender=sender,
                )
            finally:
                self._x.branches.leave()
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
        self, step_id: str, *, timeout: Timeout, name: str | None = None
    ) -> Message | None:
        """The oldest unconsumed message in this run's mailbox (of ``name``, if given,
        leaving others queued), waiting for one; None on timeout."""
        spec = conditions.message(name)
        due = self._deadline(timeout)
        found = await self._wait(
            step_id, "message", due, lambda: (self._condition(spec),), spec=describe(spec)
        )
        return None if found is None else message_from_json(found)

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
            child_id, workflow, data, parent=self._x.run.id, version=self._x.version_of(workflow)
        )

        def start() -> tuple[InvokeWait]:
            if key not in self._x.memo and observe.wanted(observe.INFO):  # its first start
                observe.emit("started", observe.INFO,
                             f"{observe.run_name(child_id, workflow)} started by invoke",
                             child_id, workflow, by="invoke", parent=self._x.run.id)  # fmt: skip
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
            name, data, None, limit=self._x.settings.max_output_bytes, now=self._x.clock.now()
        )
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
