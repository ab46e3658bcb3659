"""App: the workflow registry, the client methods and their blocking twins."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Concatenate, ParamSpec, TypeVar

from . import serde
from .conditions import (
    CancelOn,
    EventCondition,
    Trigger,
    compile_cancel_on,
    compile_triggers,
    new_event,
)
from .durations import Duration, parse_duration
from .errors import (
    ConfigError,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunNotFound,
    SignalNotFound,
    WorkflowNotFound,
)
from .ids import new_id
from .models import (
    RUN_STATUSES,
    Event,
    Message,
    Page,
    Run,
    SendResult,
    SignalResult,
    StepRecord,
    WaitingFor,
    to_datetime,
)
from .portal import Portal
from .store.base import NewRun, RunRow, StepRow, Store, WorkflowConfig
from .urls import mask_url
from .worker import Worker

P = ParamSpec("P")
T = TypeVar("T")
Handler = Callable[..., Any]

DEFAULT_DATABASE = "sqlite:///./.tarry/tarry.db"


@dataclass(frozen=True, slots=True)
class Workflow:
    id: str
    fn: Handler
    is_async: bool
    retries: int
    triggers: tuple[Trigger, ...] = ()
    cancel_on: tuple[EventCondition, ...] = ()
    concurrency: int | None = None

    def config(self) -> WorkflowConfig:
        return WorkflowConfig(
            self.id,
            tuple((t.event, t.if_) for t in self.triggers),
            tuple(c.filing() for c in self.cancel_on),
        )


def open_store(url: str) -> Store:
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from .store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if scheme in ("postgresql", "postgres"):
        try:
            from .store.postgres import PostgresStore  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError as exc:
            raise ConfigError(
                f"cannot use {mask_url(url)!r}: the PostgreSQL store is not available "
                f"({exc}); install tarry[postgres]"
            ) from None
        store: Store = PostgresStore(url)
        return store
    raise ConfigError(
        f"unknown database URL scheme in {mask_url(url)!r}: use sqlite:///path/to/file.db "
        "or postgresql://user@host/db"
    )


def _blocking(
    method: Callable[Concatenate[App, P], Awaitable[T]],
) -> Callable[Concatenate[App, P], T]:
    """Make the blocking ``*_sync`` twin of an async client method."""

    def twin(self: App, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._portal.call(method(self, *args, **kwargs))  # type: ignore[arg-type]

    twin.__name__ = f"{method.__name__}_sync"
    twin.__doc__ = f"Blocking twin of ``{method.__name__}``, callable from any thread."
    return twin


def _to_run(row: RunRow, steps: list[StepRow]) -> Run:
    waiting = serde.loads(row.waiting_for)
    return Run(
        id=row.id,
        workflow=row.workflow,
        status=row.status,  # type: ignore[arg-type]
        payload=serde.loads(row.payload),
        output=serde.loads(row.output),
        error=serde.loads(row.error),
        created_at=to_datetime(row.created_at),  # type: ignore[arg-type]
        updated_at=to_datetime(row.updated_at),  # type: ignore[arg-type]
        ended_at=to_datetime(row.ended_at),
        waiting_for=None
        if waiting is None
        else WaitingFor(
            kind=waiting["kind"],
            step=waiting["step"],
            key=waiting.get("key"),
            expires_at=to_datetime(waiting.get("expires_at")),
        ),
        steps=[
            StepRecord(
                id=s.key,
                kind=s.kind,
                status=s.status,
                output=serde.loads(s.output),
                error=serde.loads(s.error),
                attempts=s.attempts,
                started_at=to_datetime(s.started_at),
                ended_at=to_datetime(s.ended_at),
            )
            for s in steps
        ],
    )


def _check_limit(limit: object) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
        raise ValueError(f"limit must be an integer from 1 to 1000, got {limit!r}")


def _parse_cursor(cursor: object) -> int | None:
    if cursor is None:
        return None
    if (
        not isinstance(cursor, str)
        or not cursor.isascii()
        or not cursor.isdigit()
        or len(cursor) > 18
    ):
        raise ValueError(f"invalid cursor {cursor!r}: pass a next_cursor from a listing")
    return int(cursor)


class App:
    """The registry of workflows plus a store, and the client of both."""

    def __init__(
        self,
        database: str | None = None,
        *,
        signal_retention: Duration = "24h",
        lease: Duration = "30s",
        retry_base: Duration = "1s",
        retry_cap: Duration = "10m",
        max_output_bytes: int = 4 * 1024 * 1024,
        max_steps: int = 10_000,
        event_retention: Duration = "7d",
        event_dedupe: Duration = "24h",
    ) -> None:
        url = database or os.environ.get("TARRY_DATABASE_URL") or DEFAULT_DATABASE
        if not isinstance(url, str):
            raise ConfigError(f"database must be a URL string, got {url!r}")
        self.database = url
        self.signal_retention = parse_duration(signal_retention)
        self.lease = parse_duration(lease)
        if self.lease <= 0:
            raise ConfigError(f"lease must be positive, got {lease!r}")
        self.retry_base = parse_duration(retry_base)
        self.retry_cap = parse_duration(retry_cap)
        if not isinstance(max_output_bytes, int) or max_output_bytes < 1:
            raise ConfigError(
                f"max_output_bytes must be a positive integer, got {max_output_bytes!r}"
            )
        self.max_output_bytes = max_output_bytes
        if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
            raise ConfigError(f"max_steps must be a positive integer, got {max_steps!r}")
        self.max_steps = max_steps
        self.event_retention = parse_duration(event_retention)
        self.event_dedupe = parse_duration(event_dedupe)
        self._synced: tuple[str, ...] = ()
        self._opened = False
        self.workflows: dict[str, Workflow] = {}
        self._store = open_store(url)
        self._portal = Portal()
        self._ended_lock = threading.Lock()
        self._ended_waiters: dict[str, list[Callable[[], None]]] = {}

    def __repr__(self) -> str:
        return f"App(database={mask_url(self.database)!r}, workflows={list(self.workflows)})"

    # -- registry --------------------------------------------------------------------

    def workflow(
        self,
        id: str,
        *,
        on: str | Trigger | Sequence[str | Trigger] | None = None,
        retries: int = 4,
        cancel_on: CancelOn | Sequence[CancelOn] | None = None,
        concurrency: int | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register ``handler(ctx, step)`` (async, or a plain def run in a thread).

        ``on``: event names (or ``tarry.trigger(name, if_=cel)``) that each start a
        run; ``cancel_on``: ``tarry.cancel_on(...)`` conditions that cancel one;
        ``concurrency``: at most that many runs executing at once, across all workers
        (parked runs do not count)."""
        if not isinstance(id, str) or not id:
            raise ConfigError(f"workflow id must be a non-empty string, got {id!r}")
        if id in self.workflows:
            raise ConfigError(f"workflow {id!r} is already registered")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ConfigError(f"retries must be a non-negative integer, got {retries!r}")
        if concurrency is not None and (
            not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1
        ):
            raise ConfigError(f"concurrency must be a positive integer, got {concurrency!r}")
        triggers = tuple(compile_triggers(on, id))
        cancels = tuple(compile_cancel_on(cancel_on, id))

        def register(fn: Handler) -> Handler:
            if id in self.workflows:
                raise ConfigError(f"workflow {id!r} is already registered")
            if not callable(fn):
                raise ConfigError(f"workflow {id!r} must decorate a function, got {fn!r}")
            is_async = inspect.iscoroutinefunction(fn)
            self.workflows[id] = Workflow(id, fn, is_async, retries, triggers, cancels, concurrency)
            return fn

        return register

    # -- plumbing --------------------------------------------------------------------

    async def _open(self) -> Store:
        registered = tuple(self.workflows)
        if self._opened and registered == self._synced:
            return self._store
        await self._store.open()
        self._opened = True
        if registered != self._synced:
            # What starts and cancels these workflows must be in the store, so an
            # event sent from any process finds it.
            await self._store.sync_workflows([w.config() for w in self.workflows.values()])
            self._synced = registered
        return self._store

    def _run_ended(self, run_id: str) -> None:
        with self._ended_lock:
            callbacks = self._ended_waiters.pop(run_id, [])
        for callback in callbacks:
            callback()

    async def close(self) -> None:
        """Close the store; the App can be opened again by its next call."""
        self._opened = False
        await self._store.close()

    async def __aenter__(self) -> App:
        """``async with tarry.App(...) as app:`` opens the store for this event loop,
        lets the store serve it without thread hops where it can, and closes it."""
        store = await self._open()
        await store.bind_loop()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._store.unbind_loop()
        await self.close()

    def close_sync(self) -> None:
        self._portal.call(self.close())
        self._portal.close()

    # -- client ----------------------------------------------------------------------

    async def start(self, workflow: str, payload: Any = None, *, run_id: str | None = None) -> str:
        """Start a run; a second start with the same ``run_id`` returns that run's id."""
        if self.workflows and workflow not in self.workflows:
            raise WorkflowNotFound(
                f"no workflow {workflow!r} is registered; known: {sorted(self.workflows)}"
            )
        if not isinstance(workflow, str) or not workflow:
            raise WorkflowNotFound(f"workflow id must be a non-empty string, got {workflow!r}")
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
        data = serde.dumps({} if payload is None else payload, what="start payload")
        store = await self._open()
        created_id, _ = await store.create_run(NewRun(run_id or new_id(), workflow, data))
        return created_id

    async def send_signal(
        self, signal: str, data: Any = None, *, strict: bool = False
    ) -> SignalResult:
        """Resume the run waiting on key ``signal``, else buffer the signal for it."""
        if not isinstance(signal, str) or not signal:
            raise ValueError(f"signal key must be a non-empty string, got {signal!r}")
        if data is None:
            raise ValueError(
                "signal data must not be None: None is what a wait returns on timeout; "
                "send {} or another value"
            )
        payload = serde.dumps(data, what=f"data of signal {signal!r}")
        store = await self._open()
        outcome = await store.send_signal(
            signal, payload, strict=strict, retention_seconds=self.signal_retention
        )
        if outcome.status == "not_found":
            raise SignalNotFound(
                f"no run waits on signal {signal!r} (strict=True, so nothing was stored)"
            )
        return SignalResult(outcome.status, outcome.run_id)

    async def send_event(self, name: str, data: Any = None, *, id: str | None = None) -> SendResult:
        """Store an event, start the workflows it triggers and resume the runs whose
        wait matches it. An ``id`` already seen within 24 hours is ignored."""
        event = new_event(name, data, id)
        store = await self._open()
        outcome = await store.send_event(event, dedupe_seconds=self.event_dedupe)
        return SendResult([outcome.event_id], list(outcome.started), list(outcome.resumed))

    async def list_events(
        self, *, name: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page[Event]:
        """Stored events newest first (kept for ``event_retention``); page with ``cursor``."""
        _check_limit(limit)
        after = _parse_cursor(cursor)
        store = await self._open()
        rows = await store.list_events(name=name, limit=limit, cursor=after)
        events = [Event(r.name, serde.loads(r.data), r.id, to_datetime(r.ts)) for r in rows]  # type: ignore[arg-type]
        return Page(events, str(rows[-1].seq) if len(rows) == limit else None)

    async def send_message(self, run_id: str, name: str, data: Any = None) -> None:
        """Append a message to the run's mailbox; returns once it is durable."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"message name must be a non-empty string, got {name!r}")
        payload = serde.dumps({} if data is None else data, what=f"data of message {name!r}")
        store = await self._open()
        outcome = await store.send_message(run_id, name, payload)
        if outcome == "not_found":
            raise RunNotFound(f"no run {run_id!r} in {mask_url(self.database)!r}")
        if outcome == "finished":
            raise RunFinished(f"run {run_id!r} has ended; message {name!r} was not stored")

    async def get_run(self, run_id: str) -> Run:
        """A run with its steps, what it waits for, and its mailbox."""
        store = await self._open()
        found = await store.get_run(run_id)
        if found is None:
            raise RunNotFound(f"no run {run_id!r} in {mask_url(self.database)!r}")
        messages = [
            Message(m.name, serde.loads(m.data), to_datetime(m.sent_at), m.consumed_by)  # type: ignore[arg-type]
            for m in await store.list_messages(run_id)
        ]
        return replace(_to_run(*found), messages=messages)

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Run]:
        """Runs newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
        if status is not None and status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}; expected one of {RUN_STATUSES}")
        _check_limit(limit)
        after = _parse_cursor(cursor)
        store = await self._open()
        rows = await store.list_runs(status=status, workflow=workflow, limit=limit, cursor=after)
        runs = [_to_run(row, []) for row in rows]
        next_cursor = str(rows[-1].seq) if len(rows) == limit else None
        return Page(runs, next_cursor)

    async def result(self, run_id: str, *, timeout: Duration | None = None) -> Any:
        """Wait for the run to end: its output, or ``RunFailed`` / ``RunCancelled``."""
        give_up = None if timeout is None else time.monotonic() + parse_duration(timeout)
        loop = asyncio.get_running_loop()
        ended = asyncio.Event()

        def on_end() -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(ended.set)

        pause = 0.005
        while True:
            with self._ended_lock:
                self._ended_waiters.setdefault(run_id, []).append(on_end)
            run = await self.get_run(run_id)
            if run.status == "completed":
                return run.output
            if run.status == "failed":
                raise RunFailed(run_id, run.error)
            if run.status == "cancelled":
                raise RunCancelled(run_id, (run.error or {}).get("message"))
            wait = pause if give_up is None else min(pause, give_up - time.monotonic())
            if wait <= 0:
                raise TimeoutError(f"run {run_id!r} is still {run.status} after {timeout!r}")
            # Ends in this process arrive at once; other processes' by polling.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), wait)
            ended.clear()
            pause = min(pause * 2, 0.25)

    async def cancel(self, run_id: str, reason: str | None = None) -> Run:
        """Cancel a run: at once if queued or parked, else at its next step."""
        error = serde.dumps({"type": "Cancelled", "message": reason or "cancelled"})
        store = await self._open()
        row = await store.cancel(run_id, error)
        if row is None:
            raise RunNotFound(f"no run {run_id!r} in {mask_url(self.database)!r}")
        if row.status == "cancelled":
            self._run_ended(run_id)
        return await self.get_run(run_id)

    # -- workers ---------------------------------------------------------------------

    async def run_worker(self, *, concurrency: int = 32) -> None:
        """Claim and execute this App's runs until cancelled."""
        await Worker(self, concurrency=concurrency).run()

    @contextlib.asynccontextmanager
    async def worker(self, *, concurrency: int = 32) -> AsyncIterator[Worker]:
        """Run a worker in the background for the body of an ``async with``."""
        worker = Worker(self, concurrency=concurrency)
        await self._open()
        task = asyncio.create_task(worker.run(), name="tarry-worker")
        try:
            yield worker
        finally:
            worker.stop()
            await task

    # -- blocking twins --------------------------------------------------------------

    start_sync = _blocking(start)
    send_signal_sync = _blocking(send_signal)
    send_event_sync = _blocking(send_event)
    send_message_sync = _blocking(send_message)
    list_events_sync = _blocking(list_events)
    get_run_sync = _blocking(get_run)
    list_runs_sync = _blocking(list_runs)
    result_sync = _blocking(result)
    cancel_sync = _blocking(cancel)
    run_worker_sync = _blocking(run_worker)
