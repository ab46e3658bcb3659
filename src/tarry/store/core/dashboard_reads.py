"""The dashboard's store operations: its signing keys, the runs search, what events
did, what parked runs wait on, and the approvals inbox (the waits on people).

Reads only, apart from the signing keys: the first server to ask for a key stores
the one it offers, and every server after it (a restart, another process on the
same database) gets that one, so sessions and forms outlive a process.
"""

from __future__ import annotations

from ..base import EventRow
from ..dashboard_records import (
    EventLinks,
    Inbox,
    PersonWait,
    RunDetail,
    RunSearch,
    SearchResult,
    WaitCondition,
)
from ..rows import RUN_COLUMNS, run_row
from .port import Row, Tx

LINK_CANDIDATES = 5000
"""At most this many runs and wait steps are read to link events to their runs."""


async def dashboard_key(tx: Tx, name: str, offer: str) -> str:
    await tx.run("insert_dashboard_key", {"name": name, "value": offer, "now": tx.now})
    row = await tx.one("select_dashboard_key", {"name": name})
    assert row is not None  # inserted above, or there already
    return str(row[0])


async def search_runs(
    tx: Tx, search: RunSearch, limit: int, cursor: int | None, counts: bool
) -> SearchResult:
    # Built here rather than with NULL-able parameters, so each filter keeps its index
    # (the status index for a status, the primary key for the newest first).
    params = {**search.params(), "cursor": cursor, "limit": limit}
    where = _where(search, with_status=True, cursor=cursor)
    sql = f"SELECT {RUN_COLUMNS} FROM runs {where} ORDER BY seq DESC LIMIT :limit"
    rows = [run_row(row) for row in await tx.select(sql, params)] if limit > 0 else []
    by_status: dict[str, int] = {}
    if counts:
        where = _where(search, with_status=False, cursor=None)
        for status, count in await tx.select(
            f"SELECT status, count(*) FROM runs {where} GROUP BY status", params
        ):
            by_status[str(status)] = int(count)
    return SearchResult(rows, by_status)


def _where(search: RunSearch, *, with_status: bool, cursor: int | None) -> str:
    """The search's conditions: only those it has, each with its own parameter."""
    clauses = [
        test
        for present, test in (
            (with_status and search.status is not None, "status = :status"),
            (bool(search.id_prefix), "substr(id, 1, :id_len) = :id_prefix"),
            (bool(search.workflow_prefix), "substr(workflow, 1, :workflow_len) = :workflow_prefix"),
            (search.version is not None, "version = :version"),
            (search.since is not None, "created_at >= :since"),
            (search.until is not None, "created_at < :until"),
            (cursor is not None, "seq < :cursor"),
        )
        if present
    ]
    return f"WHERE {' AND '.join(clauses)}" if clauses else ""


async def event_links(tx: Tx, since: float, until: float) -> EventLinks:
    window = {"since": since, "until": until, "limit": LINK_CANDIDATES}
    started = [(str(r[0]), bytes(r[1])) for r in await tx.all("runs_triggered_between", window)]
    resumed = [
        (str(r[0]), str(r[1]), bytes(r[2])) for r in await tx.all("event_steps_ended_since", window)
    ]
    return EventLinks(started, resumed)


async def run_detail(tx: Tx, run_id: str) -> RunDetail | None:
    found = await tx.one("select_run_origin", {"id": run_id})
    if found is None:
        return None
    trigger, parent = found
    children = [str(row[0]) for row in await tx.all("select_child_runs", {"id": run_id})]
    specs = {
        str(key): str(spec)
        for key, spec in await tx.all("waiting_step_specs", {"run_id": run_id})
        if spec is not None
    }
    pending = [
        WaitCondition(*row) for row in await tx.all("run_wait_conditions", {"run_id": run_id})
    ]
    return RunDetail(None if trigger is None else bytes(trigger), parent, children, specs, pending)


async def get_event(tx: Tx, event_id: str) -> EventRow | None:
    row = await tx.one("select_event", {"id": event_id})
    return None if row is None else EventRow(int(row[0]), row[1], row[2], bytes(row[3]), row[4])


async def inbox(tx: Tx, limit: int) -> Inbox:
    """The typed waits (a schema on a signal, message or token), from an index that
    holds nothing else: their number does not grow with ended runs or untyped waits."""
    rows = await tx.all("inbox_waits", {"limit": limit}) if limit > 0 else []
    return Inbox([_person_wait(row) for row in rows], await inbox_count(tx))


def _person_wait(row: Row) -> PersonWait:
    run_id, workflow, step, step_kind, idx, kind, key, name, schema, expires, since = row
    return PersonWait(
        str(run_id),
        str(workflow),
        str(step),
        None if step_kind is None else str(step_kind),
        None if idx is None else int(idx),
        str(kind),
        None if key is None else str(key),
        "" if name is None else str(name),
        bytes(schema),
        None if expires is None else float(expires),
        None if since is None else float(since),
    )


async def inbox_count(tx: Tx) -> int:
    found = await tx.one("inbox_count", {})
    return 0 if found is None else int(found[0])
