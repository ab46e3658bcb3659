"""``step.run``: a step's function run once, memoized, retried with backoff.

The first visit of a step runs its function (a ``def`` in the worker's step
threads, an ``async def`` on the loop), stores the result and returns it; a
replay answers from the memo. A failure is retried per the workflow's
``retries``: alone, the run is released until the backoff is over; beside
sibling branches at work, the backoff is waited out beside them with the lease
kept. ``Step`` (step.py) adds the waits and sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import random
import types
from collections.abc import Callable
from typing import Any, NoReturn

import orjson

from . import observe, serde, tracing
from .durations import parse_duration
from .errors import LeaseLost, NonRetriableError, RetryAfter, StepFailed, StoreUnavailable, Suspend
from .step_core import INSIDE_STEP, StepCore, attempt_error, error_message
from .step_threads import StepThreads
from .store.base import StepRow, WaitSpec

_JITTER = random.Random()
"""The retries' jitter, apart from the ``random`` module's shared state: a library
must not move the sequence an application (or a test's property generator) seeded."""


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


class RunStep(StepCore):
    """``step.run`` and its retries (see the module)."""

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
            with tracing.step_span(self._x.span, key, attempt):
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
                self._x.outcome = "cancelled"
                self._x.ended()
            else:
                self._x.outcome = "retrying"
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
        await self._save(done)
        if self._x.debug:
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
        return _JITTER.uniform(ceiling / 2, ceiling)

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
