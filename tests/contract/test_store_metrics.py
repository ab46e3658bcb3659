"""``Store.run_counts``, what ``/metrics`` reads at each scrape: queued and running runs
by workflow, parked runs by workflow and wait kind with when the oldest parked, on
the store's clock; ended runs never counted, and (on SQLite, whose plans are read
here) never read: every lookup is an index search, never a scan of the runs."""

from __future__ import annotations

import sqlite3

import orjson

from tarry.clock import ManualClock
from tarry.store.base import Store
from tarry.store.sql import load_queries

from .test_store_contract import (
    create,
    leased,
    new_workflow,
    signal,
    signal_wait,
    sleep_wait,
)


async def test_run_counts_by_workflow_status_and_wait_kind(
    store: Store, clock: ManualClock
) -> None:
    a, b = new_workflow(), new_workflow()
    running = await leased(store, workflow=b, lease=3600)
    parked_first = await leased(store, workflow=a)
    await store.park(parked_first.lease, signal_wait(f"k-{parked_first.run.id}"))
    first_at = clock.now()
    clock.advance(5)
    for n in range(2):
        claimed = await leased(store, workflow=a)
        await store.park(claimed.lease, signal_wait(f"k-{claimed.run.id}-{n}"))
    napping = await leased(store, workflow=b)
    await store.park(napping.lease, sleep_wait(clock.now() + 3600))
    ended = await leased(store, workflow=b)
    await store.finish(ended.lease, "completed", orjson.dumps(1), None)
    resumed = await leased(store, workflow=b)
    await store.park(resumed.lease, signal_wait("resume-me"))
    await signal(store, "resume-me", {"ok": True})  # queued again: due now
    for _ in range(3):
        await create(store, a)
    clock.advance(10)

    counts = await store.run_counts()
    assert counts.now == clock.now()
    assert {k: v for k, v in counts.open.items() if k[0] in (a, b)} == {
        (a, "queued"): 3, (a, "running"): 0, (b, "queued"): 1, (b, "running"): 1,
    }  # fmt: skip
    parked = {(g.workflow, g.kind): g for g in counts.parked if g.workflow in (a, b)}
    assert set(parked) == {(a, "signal"), (b, "sleep")}
    assert parked[(a, "signal")].count == 3 and parked[(b, "sleep")].count == 1
    assert parked[(a, "signal")].oldest == first_at  # the first to park, not the last

    # An ended run is in no count.
    await store.finish(running.lease, "failed", None, orjson.dumps({"type": "E"}))
    after = await store.run_counts()
    assert after.open[(b, "running")] == 0 and after.open[(b, "queued")] == 1


def test_the_counts_read_no_ended_run(tmp_path: object) -> None:
    """Every lookup of both reads is an index search; none scans the runs table, so
    a store of millions of ended runs costs a scrape what one of none does."""
    import asyncio

    from tarry.store import open_store

    path = f"{tmp_path}/plan.db"
    store = open_store(f"sqlite:///{path}")
    asyncio.run(store.open())
    asyncio.run(store.close())
    queries = load_queries("sqlite")
    with sqlite3.connect(path) as conn:

        def plan(name: str) -> list[str]:
            return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {queries[name]}")]

        for name in ("metrics_open_runs", "metrics_parked_runs"):
            reads = [step for step in plan(name) if " runs" in f" {step}"]
            assert reads, (name, plan(name))
            assert all(step.startswith("SEARCH runs USING") for step in reads), (name, reads)
        open_runs, parked = plan("metrics_open_runs"), plan("metrics_parked_runs")
        assert any("runs_workflow_status (workflow=? AND status=?)" in s for s in open_runs)
        assert any("runs_status (status=?)" in step for step in parked)


async def test_sqlite_counts_are_read_beside_a_busy_writer(tmp_path: object) -> None:
    """On a SQLite file the scrape's reads go on their own connection: a writer thread
    busy with a long transaction does not hold the scrape back, nor the scrape it."""
    import asyncio
    import time
    from pathlib import Path

    from tarry.store.sqlite import SQLiteStore

    assert isinstance(tmp_path, Path)
    clock = ManualClock()
    sqlite_store = SQLiteStore(f"sqlite:///{tmp_path / 'counts.db'}", clock=clock)
    await sqlite_store.open()
    try:
        await create(sqlite_store, "beside")
        busy = asyncio.ensure_future(sqlite_store._io.call(lambda conn: time.sleep(1.5)))
        await asyncio.sleep(0.05)  # the writer thread is inside that operation now
        started = time.monotonic()
        counts = await sqlite_store.run_counts()
        assert time.monotonic() - started < 1.0
        assert counts.open[("beside", "queued")] == 1
        await busy
    finally:
        await sqlite_store.close()
