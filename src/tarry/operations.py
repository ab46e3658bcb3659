"""Operating runs from outside their code: retry, fork, the bulk forms, purge.

These are the App's client methods for people running tarry for months: a
failed run is retried in place once its bug is fixed, a run is forked from a
step to do part of it again, many runs are retried, cancelled or forked by a
filter (with a dry run that only counts), and ended runs are purged, written
out first when asked. They depend on the store and the settings, never on the
App, which wraps each in a method.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import IO, Any

import orjson

from . import serde
from .check import CheckReport, check_runs
from .clock import Clock
from .durations import Duration, check_aware, parse_duration
from .errors import RunNotFound, RunStateError
from .ids import new_id
from .local import Local
from .models import RUN_STATUSES, Run
from .names import check_name
from .registry import Registry
from .settings import Settings
from .store.base import NewRun, RunFilter, Store

BATCH = 500
"""Runs per page of a bulk operation, and per purge transaction."""


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What a bulk operation matched and did. ``dry_run``: nothing was done, and
    ``matched`` is how many runs it would apply to."""

    matched: int
    done: list[str] = field(default_factory=list)
    """The runs acted on (for a fork: the new runs)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Runs matched but left as they were, with why (their state changed meanwhile)."""
    dry_run: bool = False


def change_detail(by: str | None, **extra: Any) -> bytes:
    if by is not None and (not isinstance(by, str) or len(by) > 256):
        raise ValueError(f"by must be a name of at most 256 characters, got {by!r}")
    return orjson.dumps({"by": by, **extra})


def run_filter(
    *,
    workflow: str | None,
    status: str | None,
    since: datetime | Duration | None,
    until: datetime | Duration | None,
    now: float,
    live: bool = False,
) -> RunFilter:
    """A filter from the client's arguments, checked: ``since``/``until`` are aware
    datetimes or durations back from now (``"1d"``: created within the last day)."""
    if workflow is not None:
        check_name(workflow, "workflow id")
    if status is not None and status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}; expected one of {RUN_STATUSES}")
    return RunFilter(workflow, status, _when(since, now, "since"), _when(until, now, "until"), live)


def _when(value: datetime | Duration | None, now: float, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return check_aware(value, what).timestamp()
    try:
        return now - parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


async def bulk(
    store: Store,
    where: RunFilter,
    act: Callable[[str], Awaitable[str | None]],
    *,
    dry_run: bool,
) -> BulkResult:
    """Apply ``act`` to every run matching ``where``, oldest first, a page at a time;
    ``act`` returns the id it produced, or raises ``RunStateError`` to skip a run."""
    if dry_run:
        return BulkResult(await store.count_runs(where), dry_run=True)
    done: list[str] = []
    skipped: dict[str, str] = {}
    after = 0
    matched = 0
    while True:
        page = await store.find_runs(where, after, BATCH)
        for seq, run_id in page:
            after = seq
            matched += 1
            try:
                produced = await act(run_id)
            except (RunStateError, RunNotFound) as exc:
                skipped[run_id] = str(exc)
                continue
            if produced is not None:
                done.append(produced)
        if len(page) < BATCH:
            return BulkResult(matched, done, skipped)


async def purge(
    store: Store,
    *,
    before: float,
    workflow: str | None,
    dry_run: bool,
    export: IO[bytes] | None,
    describe: Callable[[str], Awaitable[bytes | None]],
) -> int:
    """Delete the ended runs that ended before ``before``, a batch per transaction,
    writing each (``describe``: its JSON line) to ``export`` first, and deleting
    exactly the runs written; how many went (``dry_run``: would go)."""
    if workflow is not None:
        check_name(workflow, "workflow id")
    if dry_run:
        every = await store.purge_runs(before=before, workflow=workflow, limit=2**62, dry_run=True)
        return len(every)
    total = 0
    while True:
        if export is None:
            gone = await store.purge_runs(before=before, workflow=workflow, limit=BATCH)
        else:
            ids = await store.purge_runs(
                before=before, workflow=workflow, limit=BATCH, dry_run=True
            )
            for run_id in ids:
                line = await describe(run_id)
                if line is not None:
                    export.write(line + b"\n")
            export.flush()
            gone = await store.purge_runs(only=ids) if ids else []
        total += len(gone)
        if len(gone) < BATCH:
            return total


def cutoff(older_than: Duration, now: float) -> float:
    try:
        return now - parse_duration(older_than)
    except ValueError as exc:
        raise ValueError(f"older_than: {exc}") from None


class RunOperations:
    """The App's methods for operating runs (mixed into ``App``)."""

    clock: Clock
    settings: Settings
    workflows: Registry
    _local: Local

    async def _open(self) -> Store:
        raise NotImplementedError

    async def get_run(self, run_id: str) -> Run:
        raise NotImplementedError

    async def retry(self, run_id: str, *, by: str | None = None) -> Run:
        """Resume a failed or cancelled run where it stopped: the failed (or cancelled)
        step runs again with a fresh retry budget, completed steps keep their results
        and do not run again, and the run's changes note the retry (``by``: who).
        ``RunStateError`` for a run that is queued, running, waiting or completed."""
        detail = change_detail(by)
        store = await self._open()
        if await store.retry_run(run_id, detail) is None:
            raise RunNotFound(f"no run {run_id!r}")
        return await self.get_run(run_id)

    async def fork(
        self,
        run_id: str,
        from_step: str,
        payload: Any = None,
        *,
        new_run_id: str | None = None,
        by: str | None = None,
    ) -> str:
        """Start a new run of the ended run's workflow in which the steps recorded
        before ``from_step`` answer with the original's results and ``from_step`` on
        run anew; its id. ``payload``: the new run's (default: the original's)."""
        check_name(from_step, "step key")
        if new_run_id is not None:
            check_name(new_run_id, "new_run_id")
        data = None
        if payload is not None:
            data = serde.dumps(payload, what="fork payload", limit=self.settings.max_output_bytes)
        store = await self._open()
        found = await store.get_run(run_id)
        if found is None:
            raise RunNotFound(f"no run {run_id!r}")
        source = found[0]
        new = NewRun(
            new_run_id or new_id(self.clock.now()),
            source.workflow,
            data if data is not None else source.payload or b"{}",
            source.trigger,
            version=self.workflows.version_of(source.workflow),
        )
        detail = change_detail(by, from_run=run_id, from_step=from_step)
        if await store.fork_run(run_id, from_step, new, detail) is None:
            raise RunNotFound(f"no run {run_id!r}")
        return new.id

    async def retry_runs(
        self,
        *,
        workflow: str | None = None,
        status: str = "failed",
        since: datetime | Duration | None = None,
        until: datetime | Duration | None = None,
        dry_run: bool = False,
        by: str | None = None,
    ) -> BulkResult:
        """``retry`` every run matching the filter (failed ones by default);
        ``since``/``until``: creation time, as an aware datetime or a duration ago."""
        where = run_filter(
            workflow=workflow, status=status, since=since, until=until, now=self.clock.now()
        )
        store = await self._open()
        detail = change_detail(by)

        async def act(run_id: str) -> str | None:
            return run_id if await store.retry_run(run_id, detail) else None

        return await bulk(store, where, act, dry_run=dry_run)

    async def cancel_runs(
        self,
        reason: str | None = None,
        *,
        workflow: str | None = None,
        status: str | None = None,
        since: datetime | Duration | None = None,
        until: datetime | Duration | None = None,
        dry_run: bool = False,
        children: bool = True,
    ) -> BulkResult:
        """``cancel`` every run matching the filter that has not ended (and, unless
        ``children=False``, the runs each invoked)."""
        where = run_filter(
            workflow=workflow, status=status, since=since, until=until, now=self.clock.now(),
            live=True,
        )  # fmt: skip
        error = serde.dumps(
            {"type": "Cancelled", "message": reason or "cancelled"},
            what="cancel reason",
            limit=self.settings.max_output_bytes,
        )
        store = await self._open()

        async def act(run_id: str) -> str | None:
            row = await store.cancel(run_id, error, children=children)
            if row is None:
                return None
            self._local.cancel(run_id)
            if row.status == "cancelled":
                self._local.ended(run_id)
            return run_id

        return await bulk(store, where, act, dry_run=dry_run)

    async def fork_runs(
        self,
        from_step: str,
        *,
        workflow: str | None = None,
        status: str | None = None,
        since: datetime | Duration | None = None,
        until: datetime | Duration | None = None,
        dry_run: bool = False,
        by: str | None = None,
    ) -> BulkResult:
        """``fork`` every ended run matching the filter from ``from_step``; ``done``
        lists the new runs. A run that never recorded that step is skipped."""
        where = run_filter(
            workflow=workflow, status=status, since=since, until=until, now=self.clock.now()
        )
        store = await self._open()

        async def act(run_id: str) -> str | None:
            try:
                return await self.fork(run_id, from_step, by=by)
            except ValueError as exc:  # no such step in that run
                raise RunStateError(str(exc)) from None

        return await bulk(store, where, act, dry_run=dry_run)

    async def check(self, *, workflow: str | None = None) -> CheckReport:
        """Replay every run that has not ended against this App's code, writing
        nothing and running no step: which would break if this code were deployed.
        See ``tarry check``."""
        if workflow is not None:
            check_name(workflow, "workflow id")
        store = await self._open()
        return await check_runs(store, self.workflows, self.settings, self.clock, workflow=workflow)

    async def purge(
        self,
        older_than: Duration,
        *,
        workflow: str | None = None,
        dry_run: bool = False,
        export: IO[bytes] | None = None,
    ) -> int:
        """Delete the runs that ended more than ``older_than`` ago (never one that has
        not ended), with their steps, attempts, changes and mailbox; how many went.
        ``export``: a binary file each run is written to first, one JSON line each."""
        before = cutoff(older_than, self.clock.now())
        store = await self._open()

        async def describe(run_id: str) -> bytes | None:
            try:
                run = await self.get_run(run_id)
            except RunNotFound:
                return None
            return serde.dumps(asdict(run), what=f"run {run_id!r}", limit=2**62)

        return await purge(
            store, before=before, workflow=workflow, dry_run=dry_run, export=export,
            describe=describe,
        )  # fmt: skip
