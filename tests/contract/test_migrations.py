"""A store written by schema version 1 opens under this tarry, upgraded in place.

For each store the test builds a database the way version 1 left it: only the
first migration applied, ``tarry_meta`` saying ``schema_version`` 1, and rows in
version 1's columns (a parked run with a step record and a waiter on a signal
key, a finished run, a buffered signal). ``open_store(url)`` + ``open()`` must
apply the later migrations, keep those rows, and leave a store on which the
old runs carry on and every later feature works. The store runs on a
``ManualClock`` started at ``NOW``, the time version 1's rows are dated from.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Sequence
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import orjson
import pytest

from tarry.clock import ManualClock
from tarry.conditions import EventCondition
from tarry.store import open_store
from tarry.store.base import (
    EventWait,
    MessageWait,
    NewEvent,
    NewRun,
    SignalWait,
    Store,
    WaitSpec,
    WorkflowConfig,
)

LEASE = 5.0
_MIGRATION = re.compile(r"^(\d+)_[\w.-]*\.sql$")


# -- finding the migrations, wherever the SQL lives ----------------------------------------


def _walk(folder: Traversable, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for entry in folder.iterdir():
        if entry.is_dir():
            found.extend(_walk(entry, (*path, entry.name)))
        else:
            found.append(((*path, entry.name), entry))
    return found


def migrations(dialect: str) -> dict[int, Any]:
    """``{version: file}`` of the dialect's migrations under ``tarry.store.sql``: files
    named ``NNNN_*.sql`` whose folder or name says the dialect. Fails, with what is
    there, when they cannot be told apart or the first one is missing."""
    root = files("tarry.store.sql")
    everything = _walk(root)
    found: dict[int, list[tuple[tuple[str, ...], Any]]] = {}
    for path, entry in everything:
        match = _MIGRATION.match(path[-1])
        if match and any(dialect in part for part in path):
            found.setdefault(int(match.group(1)), []).append((path, entry))
    listing = sorted("/".join(path) for path, _ in everything if path[-1].endswith(".sql"))
    if 1 not in found:
        pytest.fail(
            f"no first migration (0001_*.sql) for {dialect} under {root}; its SQL files are "
            f"{listing}"
        )
    clashes = {
        v: ["/".join(p) for p, _ in entries] for v, entries in found.items() if len(entries) > 1
    }
    if clashes:
        pytest.fail(f"more than one {dialect} migration per version: {clashes}")
    return {version: entries[0][1] for version, entries in sorted(found.items())}


# -- a version 1 database ------------------------------------------------------------------

NOW = time.time()
PARKED = "old-parked"
DONE = "old-done"
WAITING_FOR = orjson.dumps(
    {"kind": "signal", "step": "approve", "key": "approval:1", "expires_at": None}
)
# Version 1's columns, named: a parked run, a finished one, the parked run's step
# records, its waiter, and a signal buffered on another key.
V1_ROWS: list[tuple[str, dict[str, Any]]] = [
    (
        "runs",
        {
            "id": PARKED,
            "workflow": "legacy",
            "status": "waiting",
            "payload": b'{"order":1}',
            "output": None,
            "error": None,
            "created_at": NOW - 100,
            "updated_at": NOW - 50,
            "ended_at": None,
            "due_at": None,
            "lease_token": None,
            "waiting_for": WAITING_FOR,
            "cancel_requested": False,
            "cancel_reason": None,
        },
    ),
    (
        "runs",
        {
            "id": DONE,
            "workflow": "legacy",
            "status": "completed",
            "payload": b"{}",
            "output": b'"done"',
            "error": None,
            "created_at": NOW - 90,
            "updated_at": NOW - 80,
            "ended_at": NOW - 80,
            "due_at": None,
            "lease_token": None,
            "waiting_for": None,
            "cancel_requested": False,
            "cancel_reason": None,
        },
    ),
    (
        "steps",
        {
            "run_id": PARKED,
            "key": "load",
            "kind": "run",
            "status": "completed",
            "output": b'{"total":5}',
            "error": None,
            "attempts": 1,
            "started_at": NOW - 99,
            "ended_at": NOW - 98,
        },
    ),
    (
        "steps",
        {
            "run_id": PARKED,
            "key": "approve",
            "kind": "signal",
            "status": "waiting",
            "output": None,
            "error": None,
            "attempts": 1,
            "started_at": NOW - 50,
            "ended_at": None,
        },
    ),
    (
        "waiters",
        {
            "run_id": PARKED,
            "step_key": "approve",
            "kind": "signal",
            "key": "approval:1",
            "expires_at": None,
        },
    ),
    (
        "signals",
        {
            "key": "early",
            "data": b'{"pre":true}',
            "created_at": NOW - 10,
            "expires_at": NOW + 3600,
        },
    ),
]


def _inserts(placeholder: str) -> list[tuple[str, Sequence[Any]]]:
    statements: list[tuple[str, Sequence[Any]]] = []
    for table, row in V1_ROWS:
        columns = ", ".join(row)
        marks = ", ".join(placeholder for _ in row)
        statements.append((f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(row.values())))
    return statements


def _postgres_parts(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    schema = query.pop("schema")[0]
    return urlunsplit(parts._replace(query=urlencode(query, doseq=True))), schema


def build_version_1(url: str, init_sql: str) -> None:
    if url.startswith("sqlite:"):
        with contextlib.closing(sqlite3.connect(url[len("sqlite:///") :])) as conn:
            conn.executescript(init_sql)
            conn.execute("CREATE TABLE tarry_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("INSERT INTO tarry_meta (key, value) VALUES ('schema_version', '1')")
            for statement, params in _inserts("?"):
                conn.execute(statement, params)
            conn.commit()
        return
    import psycopg
    from psycopg import sql

    conninfo, schema = _postgres_parts(url)
    with psycopg.connect(conninfo) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(init_sql.encode())
        conn.execute("CREATE TABLE tarry_meta (key text PRIMARY KEY, value text NOT NULL)")
        conn.execute("INSERT INTO tarry_meta (key, value) VALUES ('schema_version', '1')")
        for statement, params in _inserts("%s"):
            conn.execute(statement.encode(), params)
        conn.commit()


def schema_version(url: str) -> int:
    query = "SELECT value FROM tarry_meta WHERE key = 'schema_version'"
    if url.startswith("sqlite:"):
        with contextlib.closing(sqlite3.connect(url[len("sqlite:///") :])) as conn:
            return int(conn.execute(query).fetchone()[0])
    import psycopg
    from psycopg import sql

    conninfo, schema = _postgres_parts(url)
    with psycopg.connect(conninfo) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        row = conn.execute(query.encode()).fetchone()
        assert row is not None
        return int(row[0])


# -- the test ------------------------------------------------------------------------------


def j(data: bytes | None) -> Any:
    return None if data is None else orjson.loads(data)


def _spec(kind: Any, step: str, condition: Any) -> WaitSpec:
    shown = {"kind": kind, "step": step, "key": None, "expires_at": None}
    # No started_at: the store stamps the wait's step with its own clock's now.
    return WaitSpec(step, kind, None, orjson.dumps(shown), (condition,))


async def _claim_one(store: Store, workflow: str, run_id: str) -> Any:
    batch = await store.claim([workflow], 10, LEASE)
    assert [c.run.id for c in batch.runs] == [run_id]
    return batch.runs[0]


async def test_a_version_1_store_is_upgraded_and_keeps_working(database_url: str) -> None:
    dialect = "sqlite" if database_url.startswith("sqlite:") else "postgres"
    found = migrations(dialect)
    latest = max(found)
    assert latest > 1, f"only one {dialect} migration: nothing to upgrade"
    build_version_1(database_url, found[1].read_text("utf-8"))
    assert schema_version(database_url) == 1

    # The rows are dated from NOW (the buffered signal is kept until NOW + 3600):
    # the store's clock starts there, whenever the test runs.
    clock = ManualClock(NOW)
    store = open_store(database_url, clock=clock)
    await store.open()
    try:
        assert schema_version(database_url) == latest
        await _check_upgraded(store)
    finally:
        await store.close()

    # Opening the upgraded store again applies nothing twice.
    store = open_store(database_url, clock=clock)
    await store.open()
    try:
        assert schema_version(database_url) == latest
        got = await store.get_run(PARKED)
        assert got is not None and got[0].status == "completed"
    finally:
        await store.close()


async def _check_upgraded(store: Store) -> None:
    # The old rows survived, as version 1 wrote them.
    got = await store.get_run(PARKED)
    assert got is not None
    run, steps = got
    assert (run.id, run.workflow, run.status) == (PARKED, "legacy", "waiting")
    assert j(run.payload) == {"order": 1} and j(run.waiting_for) == j(WAITING_FOR)
    assert run.created_at == pytest.approx(NOW - 100, abs=1e-3)
    assert run.due_at is None and run.ended_at is None and run.output is None
    assert run.cancel_requested is False and run.trigger is None
    by_key = {s.key: s for s in steps}
    assert set(by_key) == {"load", "approve"}
    load = by_key["load"]
    assert (load.kind, load.status, j(load.output), load.attempts) == (
        "run",
        "completed",
        {"total": 5},
        1,
    )
    assert load.started_at == pytest.approx(NOW - 99, abs=1e-3)
    assert (by_key["approve"].kind, by_key["approve"].status) == ("signal", "waiting")
    done = await store.get_run(DONE)
    assert done is not None
    assert (done[0].status, j(done[0].output), done[1]) == ("completed", "done", [])
    rows = await store.list_runs(status=None, workflow="legacy", limit=10, cursor=None)
    assert [r.id for r in rows] == [DONE, PARKED]

    # The old waiter still works: a signal on its key resumes the parked run.
    outcome = await store.send_signal(
        "approval:1", orjson.dumps({"ok": True}), strict=True, retention_seconds=60
    )
    assert (outcome.status, outcome.run_id) == ("delivered", PARKED)
    claimed = await _claim_one(store, "legacy", PARKED)
    steps_now = {s.key: s for s in claimed.steps}
    assert (steps_now["approve"].status, j(steps_now["approve"].output)) == (
        "completed",
        {"ok": True},
    )
    assert j(steps_now["load"].output) == {"total": 5}

    # The old buffered signal is consumed by a new wait on its key.
    result = await store.park(claimed.lease, _spec("signal", "early", SignalWait("early")))
    assert result.outcome == "resolved" and result.step is not None
    assert j(result.step.output) == {"pre": True}
    again = await store.send_signal("early", b"1", strict=True, retention_seconds=60)
    assert again.status == "not_found"

    # Later features work on the old run: its mailbox ...
    assert await store.send_message(PARKED, "note", b'"hello"') == "queued"
    result = await store.park(claimed.lease, _spec("message", "mail", MessageWait()))
    assert result.outcome == "resolved" and result.step is not None
    assert j(result.step.output)["data"] == "hello"
    assert [(m.name, m.consumed_by) for m in await store.list_messages(PARKED)] == [
        ("note", "mail")
    ]

    # ... events, triggers and event waits ...
    filing = EventCondition.build("app/resume", None, None, "test").filing()
    result = await store.park(claimed.lease, _spec("event", "ev", EventWait(filing)))
    assert result.outcome == "parked"
    await store.sync_workflows([WorkflowConfig("fresh", (("app/resume", None),))])
    sent = await store.send_event(
        NewEvent("evt-1", "app/resume", b'{"n":1}', dedupe=True), dedupe_seconds=60
    )
    assert sent.resumed == (PARKED,) and len(sent.started) == 1
    assert [e.id for e in await store.list_events(name=None, limit=10, cursor=None)] == ["evt-1"]

    # ... and new runs are numbered after the old ones.
    assert await store.create_run(NewRun("new-run", "legacy", b"{}")) == ("new-run", True)
    rows = await store.list_runs(status=None, workflow="legacy", limit=10, cursor=None)
    assert [r.id for r in rows] == ["new-run", DONE, PARKED]

    claimed = await store.claim(["legacy"], 10, LEASE)
    leases = {c.run.id: c.lease for c in claimed.runs}
    assert set(leases) == {PARKED, "new-run"}
    assert await store.finish(leases[PARKED], "completed", b'"upgraded"', None) == "completed"
    got = await store.get_run(PARKED)
    assert got is not None and got[0].status == "completed"
    assert {s.key for s in got[1]} == {"load", "approve", "early", "mail", "ev"}
