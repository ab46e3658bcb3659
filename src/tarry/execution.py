"""Replay one claimed run and turn its outcome into one store call.

The handler runs from the top against the attempt's memo; what it returns,
raises or bails with becomes the run's end. A cancel asked meanwhile wins over
any of them: the run ends cancelled (``Attempt.end``), never completed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any

import orjson

from . import serde
from .attempt import Attempt
from .errors import Bail, LeaseLost, StepFailed, StoreUnavailable, Suspend
from .registry import Workflow
from .step import Step
from .step_core import refuse_nested
from .tracebacks import format_bounded

log = logging.getLogger("tarry")


class SyncStep:
    """The step methods for a plain ``def`` handler running in a thread: each call is
    sent to the worker's event loop and blocks until it answers."""

    def __init__(self, step: Step, loop: asyncio.AbstractEventLoop) -> None:
        self._step = step
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._step, name)
        if not asyncio.iscoroutinefunction(method):
            return method

        branches = self._step._x.branches

        async def call(*args: Any, **kwargs: Any) -> Any:
            branches.leave()  # this thread waits on the step: it runs no code meanwhile
            try:
                return await method(*args, **kwargs)
            finally:
                branches.enter()

        def blocking(*args: Any, **kwargs: Any) -> Any:
            refuse_nested(args[0] if args else kwargs.get("step_id"))  # from a step function
            return asyncio.run_coroutine_threadsafe(call(*args, **kwargs), self._loop).result()

        return blocking

    def parallel(self, *branches: Callable[[], Any]) -> list[Any]:
        """Run ``branches`` (functions of no arguments that call step methods) side by
        side, each in a thread of its own; their results in order. The first error
        of a branch is raised once every branch has stopped."""
        owner = self._step._x.branches
        done: list[Any] = [None] * len(branches)
        errors: list[BaseException | None] = [None] * len(branches)

        def branch(index: int, fn: Callable[[], Any]) -> None:
            try:
                done[index] = fn()
            except BaseException as exc:  # Suspend included: reported below
                errors[index] = exc
                if not isinstance(exc, Suspend):  # the run must not park under the error
                    self._loop.call_soon_threadsafe(owner.set_broken, True)
            finally:
                self._loop.call_soon_threadsafe(owner.leave)

        def start() -> None:
            for _ in branches:
                owner.enter()

        asyncio.run_coroutine_threadsafe(_call(start), self._loop).result()
        threads = [
            threading.Thread(target=branch, args=(i, fn), name=f"tarry-branch-{i}", daemon=True)
            for i, fn in enumerate(branches)
        ]
        for thread in threads:
            thread.start()
        asyncio.run_coroutine_threadsafe(_call(owner.leave), self._loop).result()
        try:
            for thread in threads:
                thread.join()
        finally:
            asyncio.run_coroutine_threadsafe(_call(owner.enter), self._loop).result()
            asyncio.run_coroutine_threadsafe(
                _call(lambda: owner.set_broken(False)), self._loop
            ).result()
        first = next(
            (exc for exc in errors if exc is not None and not isinstance(exc, Suspend)), None
        )
        stopped = next((exc for exc in errors if isinstance(exc, Suspend)), None)
        if stopped is not None:
            raise stopped
        if first is not None:
            raise first
        return done


async def _call(fn: Callable[[], None]) -> None:
    fn()


def _error_json(exc: BaseException) -> bytes:
    """The run's error: its type, message, step and traceback. Branches' errors (an
    ExceptionGroup) are named by their own: the one, or each of several."""
    shown = exc
    if isinstance(exc, BaseExceptionGroup):
        leaves = _leaves(exc)
        shown = leaves[0] if len(leaves) == 1 else exc
        message = "; ".join(f"{type(e).__name__}: {e}" for e in leaves)
    info: dict[str, Any] = {
        "type": type(shown).__name__,
        "message": str(shown) or type(shown).__name__,
    }
    if shown is exc and isinstance(exc, BaseExceptionGroup):
        info["message"] = message
    if isinstance(shown, StepFailed):
        info["step"] = shown.step_id
    info["traceback"] = format_bounded(exc)
    return orjson.dumps(info)


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


async def execute(
    attempt: Attempt, workflow: Workflow, handlers: concurrent.futures.Executor
) -> None:
    """Run the workflow's handler (a plain ``def`` in the ``handlers`` pool) and store
    the outcome."""
    x = attempt
    step = Step(x)
    if x.version is not None and x.run.last_version != x.version:
        try:  # code deployed since the run last ran, or a run started elsewhere
            await x.store.note_version(x.lease, x.version)
        except (LeaseLost, StoreUnavailable) as exc:
            x.stop(exc)
            return
    try:
        try:
            if workflow.is_async:  # awaited here: a coroutine less per run
                x.branches.main = asyncio.current_task()
                output = await workflow.fn(x.ctx, step)
            else:
                output = await _sync_handler(x, workflow, step, handlers)
        finally:
            if x.branches.open():  # no branch parks the run once the handler is done
                await x.branches.close()
    except Suspend:
        return
    except Bail as bail:
        await x.end("cancelled", error=orjson.dumps({"type": "Bailed", "message": bail.reason}))
        return
    except BaseExceptionGroup as group:  # a TaskGroup of branches
        if group.subgroup(Suspend) is not None:
            return  # a branch parked or stopped the run: its state is stored
        bailed = group.subgroup(Bail)
        if bailed is not None:
            reason = getattr(_leaves(bailed)[0], "reason", "bailed")
            await x.end("cancelled", error=orjson.dumps({"type": "Bailed", "message": reason}))
            return
        if not isinstance(group, Exception):
            raise
        await x.end("failed", error=_error_json(group), cause=group)
        return
    except Exception as exc:
        await x.end("failed", error=_error_json(exc), cause=exc)
        return
    if x.cancel_requested:  # the return is the run's last step boundary
        await x.honor_cancel()
        return
    try:
        limit = x.settings.max_output_bytes
        data = serde.dumps(output, what=f"output of run {x.run.id!r}", limit=limit)
    except serde.SerializationError as exc:
        await x.end("failed", error=_error_json(exc))
        return
    await x.end("completed", output=data)


async def _sync_handler(
    x: Attempt, workflow: Workflow, step: Step, handlers: concurrent.futures.Executor
) -> Any:
    loop = asyncio.get_running_loop()
    x.branches.enter()  # the handler thread runs code the run must wait for
    try:
        return await loop.run_in_executor(handlers, workflow.fn, x.ctx, SyncStep(step, loop))
    finally:
        x.branches.leave()
