"""App: the public face. It owns the settings, the registry of workflows, the store,
the clock and the process's ``Local``, hands them to its workers, and offers the
client methods with their blocking twins. The client methods are its mixins':
``sends.py`` (start, signals, events, messages, cancel), ``reads.py``,
``operations.py`` and ``app_tokens.py``."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from .app_tokens import TokenClient
from .clock import Clock
from .conditions import CancelOn, Trigger
from .durations import Duration
from .errors import ConfigError
from .flow import Concurrency, Debounce, Rate
from .local import Local
from .names import check_name
from .operations import RunOperations
from .portal import Portal
from .reads import RunReads
from .registry import Handler, Registry, Workflow
from .schedules import Cron
from .sends import RunSends
from .settings import Settings
from .store import open_store
from .store.base import Store
from .urls import mask_url
from .verify import Verifier
from .webhooks import DEFAULT_MAX_BODY, Webhook, Webhooks
from .worker import STICKY_FROM, Worker

__all__ = ["App", "Workflow", "mask_url", "open_store"]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_DATABASE = "sqlite:///./.tarry/tarry.db"
DEFAULT_CONCURRENCY = {"sqlite": 128, "postgresql": 256}
"""Runs a worker executes at once when given no number, per store: where runs/s of
a 3-step workflow peaked on the 2-core dev machine, with async and with sync steps
(``bench/concurrency.py``, figures in ``bench/RESULTS.md``)."""


def _blocking(
    method: Callable[Concatenate[App, P], Awaitable[T]],
) -> Callable[Concatenate[App, P], T]:
    """Make the blocking ``*_sync`` twin of an async client method."""

    def twin(self: App, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._portal.call(method(self, *args, **kwargs))  # type: ignore[arg-type]

    twin.__name__ = f"{method.__name__}_sync"
    twin.__doc__ = f"Blocking twin of ``{method.__name__}``, callable from any thread."
    return twin


class App(RunReads, RunSends, RunOperations, TokenClient):
    """The registry of workflows plus a store, and the client of both."""

    def __init__(
        self,
        database: str | None = None,
        *,
        signal_retention: Duration = "24h",
        lease: Duration = "30s",
        retry_base: Duration = "1s",
        retry_cap: Duration | None = None,
        max_output_bytes: int = 4 * 1024 * 1024,
        max_steps: int = 10_000,
        max_history_bytes: int = 64 * 1024 * 1024,
        event_retention: Duration = "7d",
        event_dedupe: Duration = "24h",
        retention: Duration | None = None,
        sticky_for: Duration = "30s",
        version: str | None = None,
        clock: Clock | None = None,
        public_url: str | None = None,
    ) -> None:
        url = database or os.environ.get("TARRY_DATABASE_URL") or DEFAULT_DATABASE
        if not isinstance(url, str):
            raise ConfigError(f"database must be a URL string, got {url!r}")
        self.database = url
        self.settings = Settings.parse(
            signal_retention=signal_retention,
            lease=lease,
            retry_base=retry_base,
            retry_cap=retry_cap,
            max_output_bytes=max_output_bytes,
            max_steps=max_steps,
            max_history_bytes=max_history_bytes,
            event_retention=event_retention,
            event_dedupe=event_dedupe,
            retention=retention,
            sticky_for=sticky_for,
            public_url=public_url or os.environ.get("TARRY_PUBLIC_URL") or None,
        )
        self._store = open_store(url, clock=clock)
        self.clock: Clock = self._store.clock
        """Engine time (timers, deadlines, leases, backoffs) for every layer: the one
        given, or the store's, which on PostgreSQL follows the server's clock so that
        all machines agree. ``result(timeout=)`` is a client's patience: real time."""
        self.workflows = Registry()
        named = version if version is not None else os.environ.get("TARRY_VERSION") or None
        if named is not None:
            check_name(named, "version")
        self.workflows.version = named
        """``version`` names the code: else ``$TARRY_VERSION``, else each workflow's
        source hash. Runs record the version they start and last run under."""
        self._local = Local()
        self._synced = 0
        """The registry's generation the store last recorded."""
        self._opened = False
        self._portal = Portal()
        self.webhooks = Webhooks()
        """The webhook sources ``tarry serve`` receives (``app.webhook``)."""

    def __repr__(self) -> str:
        return f"App(database={mask_url(self.database)!r}, workflows={list(self.workflows)})"

    # -- options, as parsed once (read-only) ----------------------------------------

    @property
    def signal_retention(self) -> float:
        return self.settings.signal_retention

    @property
    def lease(self) -> float:
        return self.settings.lease

    @property
    def retry_base(self) -> float:
        return self.settings.retry_base

    @property
    def retry_cap(self) -> float:
        return self.settings.retry_cap

    @property
    def max_output_bytes(self) -> int:
        return self.settings.max_output_bytes

    @property
    def max_steps(self) -> int:
        return self.settings.max_steps

    @property
    def event_retention(self) -> float:
        return self.settings.event_retention

    @property
    def event_dedupe(self) -> float:
        return self.settings.event_dedupe

    # -- registry --------------------------------------------------------------------

    def workflow(
        self,
        id: str,
        *,
        on: str | Trigger | Cron | Sequence[str | Trigger | Cron] | None = None,
        retries: int = 4,
        cancel_on: CancelOn | Sequence[CancelOn] | None = None,
        concurrency: Concurrency = None,
        retain: Duration | None = None,
        rate_limit: Rate | None = None,
        debounce: Debounce | None = None,
        priority: int = 0,
    ) -> Callable[[Handler], Handler]:
        """Register ``handler(ctx, step)`` (async, or a plain def run in a thread).

        ``on``: event names (or ``tarry.trigger(name, if_=cel)``) that each start a
        run, and at most one ``tarry.cron(...)`` that starts one per slot;
        ``cancel_on``: ``tarry.cancel_on(...)`` conditions that cancel one;
        ``concurrency``: at most that many runs executing at once, across all workers
        (parked runs do not count), or ``tarry.limit(n, key=cel)`` per key, or a list
        of both; ``retain``: how long its ended runs are kept (default: the App's
        ``retention``); ``rate_limit=tarry.rate(...)``, ``debounce=tarry.debounce(...)``
        and ``priority`` (higher is claimed first): see ``tarry.flow``."""
        return self.workflows.workflow(
            id, on=on, retries=retries, cancel_on=cancel_on, concurrency=concurrency,
            retain=retain, rate_limit=rate_limit, debounce=debounce, priority=priority,
        )  # fmt: skip

    def webhook(
        self, name: str, *, verify: Verifier, event: str,
        data: Callable[[Any], Any] | None = None, max_body: int = DEFAULT_MAX_BODY,
    ) -> Webhook:  # fmt: skip
        """Receive deliveries signed as ``verify`` checks at ``POST /api/v1/webhooks/{name}``
        (``tarry serve``, no bearer token), each sent as the event ``event`` names
        (``"stripe/{{type}}"``); see ``tarry.webhooks``."""
        return self.webhooks.add(name, verify=verify, event=event, data=data, max_body=max_body)

    # -- plumbing --------------------------------------------------------------------

    async def _open(self) -> Store:
        registered = self.workflows.generation
        if self._opened and registered == self._synced:
            return self._store
        await self._store.open()
        self._opened = True
        if registered != self._synced:
            # What starts and cancels these workflows must be in the store, so an
            # event sent from any process finds it.
            await self._store.sync_workflows(self.workflows.configs())
            self._synced = registered
        return self._store

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

    # -- workers ---------------------------------------------------------------------

    def _worker(
        self,
        concurrency: int,
        doubles: Mapping[str, Mapping[str, Callable[..., Any]]] | None = None,
        sticky: bool | None = None,
    ) -> Worker:
        """``sticky``: None as in production; True keeps every parked async run asleep
        (short ones too), False none (``tarry.testing`` tests both paths)."""
        return Worker(
            settings=self.settings,
            registry=self.workflows,
            store=self._store,
            clock=self.clock,
            local=self._local,
            concurrency=concurrency,
            doubles=doubles,
            sticky=1000 if sticky is not False and self.settings.sticky_for > 0 else 0,
            sticky_from=0 if sticky else STICKY_FROM,
        )

    def _twin(self, database: str, clock: Clock) -> App:
        """The same workflows and settings on another store and clock (``tarry.testing``)."""
        twin = App(database, clock=clock)
        twin.settings = self.settings
        twin.workflows = self.workflows
        twin.webhooks = self.webhooks
        return twin

    @property
    def default_concurrency(self) -> int:
        """The concurrency of a worker given none: ``DEFAULT_CONCURRENCY`` of the store."""
        scheme = self.database.split(":", 1)[0].lower()
        return DEFAULT_CONCURRENCY["sqlite" if scheme == "sqlite" else "postgresql"]

    async def run_worker(self, *, concurrency: int | None = None) -> None:
        """Claim and execute this App's runs until cancelled; ``concurrency``: runs
        executed at once (None: ``default_concurrency``)."""
        worker = self._worker(self.default_concurrency if concurrency is None else concurrency)
        await self._open()
        await worker.run()

    @contextlib.asynccontextmanager
    async def worker(self, *, concurrency: int | None = None) -> AsyncIterator[Worker]:
        """Run a worker in the background for the body of an ``async with``."""
        worker = self._worker(self.default_concurrency if concurrency is None else concurrency)
        await self._open()
        task = asyncio.create_task(worker.run(), name="tarry-worker")
        try:
            yield worker
        finally:
            worker.stop()
            await task

    # -- blocking twins --------------------------------------------------------------

    start_sync = _blocking(RunSends.start)
    send_signal_sync = _blocking(RunSends.send_signal)
    send_event_sync = _blocking(RunSends.send_event)
    send_message_sync = _blocking(RunSends.send_message)
    list_events_sync = _blocking(RunReads.list_events)
    get_run_sync = _blocking(RunReads.get_run)
    run_version_sync = _blocking(RunReads.run_version)
    list_runs_sync = _blocking(RunReads.list_runs)
    result_sync = _blocking(RunReads.result)
    cancel_sync = _blocking(RunSends.cancel)
    retry_sync = _blocking(RunOperations.retry)
    fork_sync = _blocking(RunOperations.fork)
    retry_runs_sync = _blocking(RunOperations.retry_runs)
    cancel_runs_sync = _blocking(RunOperations.cancel_runs)
    fork_runs_sync = _blocking(RunOperations.fork_runs)
    purge_sync = _blocking(RunOperations.purge)
    check_sync = _blocking(RunOperations.check)
    run_worker_sync = _blocking(run_worker)
    complete_token_sync = _blocking(TokenClient.complete_token)
    get_token_sync = _blocking(TokenClient.get_token)
    rotate_token_secret_sync = _blocking(TokenClient.rotate_token_secret)
