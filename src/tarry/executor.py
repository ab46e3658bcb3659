"""Replay one claimed run and turn its outcome into one store call."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from . import serde
from .context import Context
from .errors import Bail, LeaseLost, StepFailed, StoreError, Suspend
from .models import event_from_json
from .step import Step
from .store.base import ClaimedRun, StepRow, Store
from .store.matching import trigger_of

if TYPE_CHECKING:
    from .app import App, Workflow

log = logging.getLogger("tarry")


class Execution:
    """The state of one run while one worker holds its lease."""

    def __init__(self, app: App, store: Store, workflow: Workflow, claimed: ClaimedRun) -> None:
        self.app = app
        self.store = store
        self.workflow = workflow
        self.run = claimed.run
        self.lease = claimed.lease
        self.retries = workflow.retries
        self.memo: dict[str, StepRow] = {row.key: row for row in claimed.steps}
        self.cancel_requested = False
        self.releasing = False
        """Set just before a write that gives the lease up (park, retry, end): a lease
        found gone after that is this attempt's own doing, not a takeover."""
        self.trigger = trigger_of(self.run.workflow, self.run.payload, self.run.trigger)
        event = event_from_json(self.trigger) if self.run.trigger is not None else None
        self.ctx = Context(self.run.id, self.run.workflow, serde.loads(self.run.payload), event)

    async def end(
        self, status: str, output: bytes | None = None, error: bytes | None = None
    ) -> None:
        self.releasing = True
        try:
            await self.store.finish(self.lease, status, output, error)
        except (LeaseLost, StoreError) as exc:
            log.info("run %s: could not end here (%s); the next attempt decides", self.run.id, exc)
            return
        self.app._run_ended(self.run.id)

    async def honor_cancel(self) -> None:
        self.releasing = True
        try:
            await self.store.honor_cancel(self.lease)
        except (LeaseLost, StoreError):
            return
        self.app._run_ended(self.run.id)


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
    return orjson.dumps(info)


async def execute(
    execution: Execution,
    handler: Callable[..., Any],
    is_async: bool,
    threads: concurrent.futures.Executor,
) -> None:
    """Run the handler from the top against the memo; store the outcome."""
    x = execution
    step = Step(x)
    try:
        if is_async:
            output = await handler(x.ctx, step)
        else:
            loop = asyncio.get_running_loop()
            output = await loop.run_in_executor(threads, handler, x.ctx, SyncStep(step, loop))
    except Suspend:
        return
    except Bail as bail:
        await x.end("cancelled", error=orjson.dumps({"type": "Bailed", "message": bail.reason}))
        return
    except Exception as exc:
        if not isinstance(exc, StepFailed):
            log.warning("run %s of %r failed", x.run.id, x.run.workflow, exc_info=True)
        await x.end("failed", error=_error_json(exc))
        return
    try:
        data = serde.dumps(output, what=f"output of run {x.run.id!r}", limit=x.app.max_output_bytes)
    except serde.SerializationError as exc:
        await x.end("failed", error=_error_json(exc))
        return
    await x.end("completed", output=data)
