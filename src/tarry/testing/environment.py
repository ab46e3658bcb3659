"""``Environment``: an App's workflows on an in-memory store and a virtual clock.

A test enters it (``async with Environment(app) as env:``, or ``with`` from
synchronous code), starts runs and sends what they wait for through ``env``,
and moves time with ``await env.advance("7d")``: every timer, wait timeout,
retry backoff and lease expiry in that span fires in time order, and each run
it wakes executes until it parks or ends before the clock moves on. No real
time passes, so a week-long wait is tested in milliseconds.

A worker runs inside, as in production. The driving methods (``advance``,
``run_until_idle``, ``waiting``, ``result``) first let it finish everything
runnable at the current time, waiting for steps that take real time rather
than cutting them short; a run that keeps executing without ever parking is
reported (``NeverIdle``) instead of hanging the test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from ..app import App
from ..clock import ManualClock
from ..durations import Duration, check_aware, parse_duration
from ..errors import RunCancelled, RunFailed, WorkflowNotFound
from ..models import Event, Page, Run, SendResult, SignalResult, WaitingFor
from ..names import check_name
from ..portal import Portal
from ..worker import Worker
from .doubles import _UNSET, StepDouble

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_START = datetime(2030, 1, 1, tzinfo=UTC)
"""Where the virtual clock starts unless told: fixed, so that runs are repeatable."""


class NotEnded(AssertionError):
    """``env.result(run_id)`` found the run still parked, queued or executing once
    everything runnable had run: send what it waits for, or move the clock."""


def _blocking(
    method: Callable[Concatenate[Environment, P], Awaitable[T]],
) -> Callable[Concatenate[Environment, P], T]:
    """The blocking ``*_sync`` twin of an async environment method."""

    def twin(self: Environment, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._block(method(self, *args, **kwargs))  # type: ignore[arg-type]

    twin.__name__ = f"{method.__name__}_sync"
    twin.__doc__ = f"Blocking twin of ``{method.__name__}``, for synchronous tests."
    return twin


class Environment:
    """Runs ``app``'s workflows in-process on virtual time; see the module's docstring.

    ``start``: where the clock starts (an aware datetime or epoch seconds; default
    2030-01-01 UTC). ``database``: the store, in-memory SQLite unless told (a
    PostgreSQL URL runs the same test on that store; it must be one made for tests).
    ``sticky=False`` makes every resume replay the run from the store (production
    resumes a run asleep in the worker that parked it without one).
    ``max_executions``: how many executions one driving call may
    start before it reports the runs that never settle. ``max_steps``: overrides
    the App's per-run step limit for this environment.
    """

    def __init__(
        self,
        app: App,
        *,
        start: datetime | float | None = None,
        database: str = "sqlite:///:memory:",
        concurrency: int = 32,
        max_executions: int = 10_000,
        max_steps: int | None = None,
        sticky: bool = True,
    ) -> None:
        if not isinstance(app, App):
            raise TypeError(f"Environment needs a tarry.App, got {type(app).__name__}")
        if isinstance(start, datetime):
            begin = check_aware(start, "start time").timestamp()
        elif start is None:
            begin = DEFAULT_START.timestamp()
        elif isinstance(start, int | float) and not isinstance(start, bool):
            begin = float(start)
        else:
            raise TypeError(f"start must be an aware datetime or epoch seconds, got {start!r}")
        if not isinstance(max_executions, int) or max_executions < 1:
            raise ValueError(f"max_executions must be a positive integer, got {max_executions!r}")
        self.clock = ManualClock(begin)
        """The virtual clock; move it with ``advance``, which also runs what falls due."""
        self.app = app._twin(database, self.clock)
        """An App with the same workflows and settings on this environment's store and
        clock: every client method (``list_runs``, ``list_events``, ...) works on it."""
        if max_steps is not None:
            self.app.settings = replace(self.app.settings, max_steps=max_steps)
        self.concurrency = concurrency
        self.sticky = sticky
        """Whether a parked run's handler may stay asleep in the worker, resumed
        without a replay (as in production); False replays every resume."""
        self.max_executions = max_executions
        self._doubles: dict[str, dict[str, StepDouble]] = {}
        self._worker: Worker | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._portal: Portal | None = None

    def __repr__(self) -> str:
        return f"Environment(now={self.now.isoformat()}, workflows={list(self.app.workflows)})"

    @property
    def now(self) -> datetime:
        """The virtual clock's time."""
        return datetime.fromtimestamp(self.clock.now(), UTC)

    # -- entering and leaving ------------------------------------------------------------

    async def __aenter__(self) -> Environment:
        await self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._close()

    def __enter__(self) -> Environment:
        """Enter from synchronous code: the environment runs on a loop of its own in a
        background thread; use the ``*_sync`` methods (``await env.x()`` still works
        from any event loop)."""
        self._portal = Portal()
        try:
            self._portal.call(self._open())
        except BaseException:
            self._portal.close()
            self._portal = None
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        portal, self._portal = self._portal, None
        if portal is not None:
            try:
                portal.call(self._close())
            finally:
                portal.close()

    async def _open(self) -> None:
        if self._loop is not None:
            raise RuntimeError("this Environment is already entered; make a new one per test")
        self._loop = asyncio.get_running_loop()
        await self.app._open()
        self._worker = self.app._worker(self.concurrency, self._doubles, self.sticky)
        self._task = asyncio.create_task(self._worker.run(), name="tarry-test-worker")

    async def _close(self) -> None:
        worker, task = self._worker, self._task
        self._worker = self._task = None
        if worker is not None and task is not None:
            worker.stop()
            await task
        await self.app.close()

    # -- moving time -----------------------------------------------------------------------

    async def run_until_idle(self) -> None:
        """Execute everything runnable at the current time, and whatever that makes
        runnable, until every run has parked or ended."""
        await self._home(self._settle())

    async def advance(self, duration: Duration) -> datetime:
        """Move the clock forward by ``duration`` (``"7d"``, seconds, a timedelta),
        firing what falls due in time order; the new time."""
        seconds = parse_duration(duration)
        return await self._home(self._advance_to(self.clock.now() + seconds))

    async def advance_to(self, when: datetime) -> datetime:
        """Move the clock forward to ``when`` (aware); see ``advance``."""
        target = check_aware(when, "time to advance to").timestamp()
        if target < self.clock.now():
            raise ValueError(
                f"cannot advance to {when.isoformat()}: the clock is already at "
                f"{self.now.isoformat()} and never goes back"
            )
        return await self._home(self._advance_to(target))

    async def _advance_to(self, target: float) -> datetime:
        due = await self._settle()
        while due is not None and due <= target:
            self.clock.set(max(due, self.clock.now()))
            due = await self._settle()
        self.clock.set(max(target, self.clock.now()))
        await self._settle()
        return self.now

    async def _settle(self) -> float | None:
        worker = self._running()
        return await worker.settle(self.max_executions)

    # -- inspecting ------------------------------------------------------------------------

    async def waiting(self, run_id: str) -> WaitingFor | None:
        """Once everything runnable has run: what the run is parked on and until when
        (``expires_at``), or None when it is not parked (ended, or held by a lease)."""
        await self.run_until_idle()
        return (await self.get_run(run_id)).waiting_for

    async def result(self, run_id: str) -> Any:
        """Once everything runnable has run: the run's output, or ``RunFailed`` /
        ``RunCancelled``; ``NotEnded`` if it has not ended (time is not moved)."""
        await self.run_until_idle()
        run = await self.get_run(run_id)
        if run.status == "completed":
            return run.output
        if run.status == "failed":
            raise RunFailed(run_id, run.error)
        if run.status == "cancelled":
            raise RunCancelled(run_id, (run.error or {}).get("message"))
        raise NotEnded(_not_ended(run, self.now))

    # -- the App's client, bound to this environment ---------------------------------------

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
        return await self._home(
            self.app.start(
                workflow, payload, run_id=run_id, delay=delay, start_at=start_at, priority=priority
            )
        )

    async def send_signal(
        self, signal: str, data: Any = None, *, strict: bool = False
    ) -> SignalResult:
        return await self._home(self.app.send_signal(signal, data, strict=strict))

    async def send_event(self, name: str, data: Any = None, *, id: str | None = None) -> SendResult:
        return await self._home(self.app.send_event(name, data, id=id))

    async def send_message(self, run_id: str, name: str, data: Any = None) -> None:
        await self._home(self.app.send_message(run_id, name, data))

    async def cancel(self, run_id: str, reason: str | None = None, *, children: bool = True) -> Run:
        return await self._home(self.app.cancel(run_id, reason, children=children))

    async def get_run(self, run_id: str) -> Run:
        return await self._home(self.app.get_run(run_id))

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        version: str | None = None,
    ) -> Page[Run]:
        return await self._home(
            self.app.list_runs(status=status, workflow=workflow, limit=limit, version=version)
        )

    async def list_events(self, *, name: str | None = None, limit: int = 50) -> Page[Event]:
        return await self._home(self.app.list_events(name=name, limit=limit))

    # -- step doubles ----------------------------------------------------------------------

    def mock_step(
        self, workflow: str, step_id: str, *, return_value: Any = None, side_effect: Any = _UNSET
    ) -> StepDouble:
        """Replace the function of ``step.run(step_id, ...)`` in ``workflow``, in this
        environment only; the double records its calls (``.calls``, ``.call_count``).

        ``side_effect``: an exception (raised: the step retries as it would), a
        callable (called with the step's arguments), or an iterable of values and
        exceptions, one per call; ``tarry.testing.WorkerCrash`` in it stops the
        execution as a killed worker would. Otherwise the step returns ``return_value``.
        """
        if workflow not in self.app.workflows:
            raise WorkflowNotFound(
                f"no workflow {workflow!r} is registered; known: {sorted(self.app.workflows)}"
            )
        check_name(step_id, "step id")
        if return_value is not None and side_effect is not _UNSET:
            raise ValueError("pass return_value or side_effect, not both")
        double = StepDouble(workflow, step_id, return_value=return_value, side_effect=side_effect)
        self._doubles.setdefault(workflow, {})[step_id] = double
        return double

    # -- plumbing --------------------------------------------------------------------------

    def _running(self) -> Worker:
        if self._worker is None:
            raise RuntimeError(
                "the Environment is not entered: use `async with Environment(app) as env:` "
                "(or `with` in synchronous code)"
            )
        return self._worker

    async def _home(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop the environment lives on, from whichever loop awaits."""
        home = self._loop
        if home is None:
            coro.close()
            self._running()
            raise AssertionError("unreachable")
        if asyncio.get_running_loop() is home:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, home))

    def _block(self, coro: Coroutine[Any, Any, T]) -> T:
        home = self._loop
        if home is None:
            coro.close()
            self._running()
            raise AssertionError("unreachable")
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is home:
            coro.close()
            raise RuntimeError(
                "a *_sync method of the Environment was called on its own event loop: "
                "use `await env.<method>(...)` in async code"
            )
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, home)
        return future.result()

    start_sync = _blocking(start)
    send_signal_sync = _blocking(send_signal)
    send_event_sync = _blocking(send_event)
    send_message_sync = _blocking(send_message)
    cancel_sync = _blocking(cancel)
    get_run_sync = _blocking(get_run)
    list_runs_sync = _blocking(list_runs)
    list_events_sync = _blocking(list_events)
    run_until_idle_sync = _blocking(run_until_idle)
    advance_sync = _blocking(advance)
    advance_to_sync = _blocking(advance_to)
    waiting_sync = _blocking(waiting)
    result_sync = _blocking(result)


def _not_ended(run: Run, now: datetime) -> str:
    where = f"run {run.id!r} of {run.workflow!r} has not ended at {now.isoformat()}: it is"
    waits = run.waiting_for
    if waits is None:
        if run.status == "running":
            return (
                f"{where} held by a worker's lease (a crashed worker's run is taken over when "
                "the lease expires: advance the clock past it)"
            )
        return f"{where} {run.status}"
    what = f"{waits.kind} {waits.key!r}" if waits.key else waits.kind
    until = f" until {waits.expires_at.isoformat()}" if waits.expires_at else " with no timeout"
    return (
        f"{where} parked at step {waits.step!r} on {what}{until}; send what it waits for, "
        "or move the clock (await env.advance(...))"
    )
