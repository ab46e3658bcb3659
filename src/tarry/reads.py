"""The App's reading methods: a run, its version token, listings, and its result.

A mixin of ``App`` (which supplies ``_open``, ``_local``, ``database`` and
``clock``), so that the App's module keeps to its own concerns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from typing import Any

from . import serde
from .clock import Clock
from .durations import Duration, parse_duration
from .errors import RunCancelled, RunFailed, RunNotFound
from .local import Local
from .models import RUN_STATUSES, Event, Message, Page, Run, to_datetime
from .records import check_limit, parse_cursor, to_run, with_history, with_queues
from .store.base import Store
from .urls import mask_url
from .waiting import on_several


class RunReads:
    """What the client reads (mixed into ``App``)."""

    database: str
    clock: Clock
    _local: Local

    async def _open(self) -> Store:
        raise NotImplementedError

    def _missing(self, run_id: str) -> RunNotFound:
        """The error for a run this store does not hold."""
        return RunNotFound(f"no run {run_id!r} in {mask_url(self.database)!r}")

    async def list_events(
        self, *, name: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page[Event]:
        """Stored events newest first (kept for ``event_retention``); page with ``cursor``."""
        check_limit(limit)
        after = parse_cursor(cursor)
        store = await self._open()
        rows = await store.list_events(name=name, limit=limit, cursor=after)
        events = [Event(r.name, serde.loads(r.data), r.id, to_datetime(r.ts)) for r in rows]  # type: ignore[arg-type]
        return Page(events, str(rows[-1].seq) if len(rows) == limit else None)

    async def get_run(self, run_id: str) -> Run:
        """A run with its steps, what it waits for, and its mailbox."""
        store = await self._open()
        found = await store.get_run(run_id)
        if found is None:
            raise self._missing(run_id)
        messages = [
            Message(m.name, serde.loads(m.data), to_datetime(m.sent_at), m.consumed_by)  # type: ignore[arg-type]
            for m in await store.list_messages(run_id)
        ]
        history = await store.run_history(run_id)
        run = with_history(replace(to_run(*found), messages=messages), history)
        return (await with_queues(store, [run]))[0]

    async def _run_record(self, run_id: str) -> Run:
        """The run without its steps, mailbox or history: what ``result`` needs."""
        store = await self._open()
        row = await store.run_row(run_id)
        if row is None:
            raise self._missing(run_id)
        return to_run(row, [])

    async def run_version(self, run_id: str) -> str:
        """A token that changes whenever the run, one of its steps or its mailbox does,
        read in one small query: poll this, and fetch the run only when it moved."""
        store = await self._open()
        version = await store.run_version(run_id)
        if version is None:
            raise self._missing(run_id)
        return version

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        version: str | None = None,
    ) -> Page[Run]:
        """Runs newest first; pass ``next_cursor`` back as ``cursor`` for the next page.
        ``version``: only runs started on that code version."""
        if status is not None and status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}; expected one of {RUN_STATUSES}")
        check_limit(limit)
        after = parse_cursor(cursor)
        store = await self._open()
        rows = await store.list_runs(
            status=status, workflow=workflow, limit=limit, cursor=after, version=version
        )
        runs = [to_run(row, []) for row in rows]
        several = [r.id for r in runs if r.waiting_for and on_several(r.waiting_for)]
        if several:  # what arrived for a wait on several conditions is kept with its step
            full = {row.id: to_run(row, steps) for row, steps in await store.get_runs(several)}
            runs = [
                replace(r, waiting_for=full[r.id].waiting_for) if r.id in full else r for r in runs
            ]
        next_cursor = str(rows[-1].seq) if len(rows) == limit else None
        return Page(await with_queues(store, runs), next_cursor)

    async def result(self, run_id: str, *, timeout: Duration | None = None) -> Any:
        """Wait for the run to end: its output, or ``RunFailed`` / ``RunCancelled``.
        ``timeout`` is real time (the caller's patience), not the App's clock."""
        give_up = None if timeout is None else time.monotonic() + parse_duration(timeout)
        loop = asyncio.get_running_loop()
        ended = asyncio.Event()

        def on_end() -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(ended.set)

        # Ends in this process arrive at once; other processes' by polling.
        forget = self._local.on_end(run_id, on_end)
        try:
            pause = 0.005
            while True:
                ended.clear()  # before reading: an end after the read still wakes us
                run = await self._run_record(run_id)
                if run.status == "completed":
                    return run.output
                if run.status == "failed":
                    raise RunFailed(run_id, run.error)
                if run.status == "cancelled":
                    raise RunCancelled(run_id, (run.error or {}).get("message"))
                wait = pause if give_up is None else min(pause, give_up - time.monotonic())
                if wait <= 0:
                    raise TimeoutError(f"run {run_id!r} is still {run.status} after {timeout!r}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended.wait(), wait)
                pause = min(pause * 2, 0.25)
        finally:
            forget()
