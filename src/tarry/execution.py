"""Replay one claimed run and turn its outcome into one store call.

The handler runs from the top against the attempt's memo; what it returns,
raises or bails with becomes the run's end. A cancel asked meanwhile wins over
any of them: the run ends cancelled (``Attempt.end``), never completed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

import orjson

from . import serde
from .attempt import Attempt
from .errors import Bail, LeaseLost, StepFailed, StoreUnavailable, Suspend
from .registry import Workflow
from .step import Step
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

        def blocking(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(method(*args, **kwargs), self._loop).result()

        return blocking


def _error_json(exc: BaseException) -> bytes:
    info: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__}
    if isinstance(exc, StepFailed):
        info["step"] = exc.step_id
    info["traceback"] = format_bounded(exc)
    return orjson.dumps(info)


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
        if workflow.is_async:
            output = await workflow.fn(x.ctx, step)
        else:
            loop = asyncio.get_running_loop()
            output = await loop.run_in_executor(handlers, workflow.fn, x.ctx, SyncStep(step, loop))
    except Suspend:
        return
    except Bail as bail:
        await x.end("cancelled", error=orjson.dumps({"type": "Bailed", "message": bail.reason}))
        return
    except Exception as exc:
        if not isinstance(exc, StepFailed) and not x.cancel_requested:
            log.warning("run %s of %r failed", x.run.id, x.run.workflow, exc_info=True)
        await x.end("failed", error=_error_json(exc))
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
