"""A PostgreSQL claim's lookups walk their own partial index in due order, whatever the
statistics say, so a claim costs its batch and not the backlog (migration 0019).

The lookups run inside ``claim_lookup``, so ``EXPLAIN`` of the claim shows only a
function scan: their own plans are read through ``auto_explain``, sent back to this
session as notices. Each is checked with no statistics at all (a fresh table) and
after ANALYZE, over a backlog of every kind: queued runs, runs of a priority, parked
runs past their deadline, runs asked to cancel, and running runs.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tarry.store import open_store
from tarry.store.base import WorkflowConfig

BACKLOG = 3000
"""Runs of each kind: enough that reading them all and sorting would be the plan a
planner without statistics picks (it expects a few dozen of them)."""

LOOKUPS = {
    "ranked": "runs_ready_priority",
    "plain": "runs_ready",
    "waiting": "runs_waiting_due",
    "cancelling": "runs_cancel_due",
}


async def _fill(url: str) -> float:
    store = open_store(url)
    await store.open()
    await store.sync_workflows([WorkflowConfig("w")])
    await store.close()
    now = time.time()
    import psycopg

    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        # Due an hour ago, one run of each kind per millisecond, in this order within
        # each; the running runs' leases have not expired.
        kinds = [
            ("q", "queued", 0, False, -3600.0),
            ("p", "queued", 5, False, -3600.0),
            ("c", "queued", 0, True, -3599.9998),
            ("w", "waiting", 0, False, -3599.9995),
            ("r", "running", 0, False, 3600.0),
        ]
        for prefix, status, priority, cancel, offset in kinds:
            conn.execute(
                "INSERT INTO runs (id, workflow, status, payload, created_at, updated_at, "
                "due_at, priority, cancel_requested) "
                "SELECT %(prefix)s || g, 'w', %(status)s, '{}'::bytea, %(at)s, %(at)s, "
                "%(at)s + %(offset)s + g * 0.001, %(priority)s, %(cancel)s "
                "FROM generate_series(1, %(n)s) AS g",
                {"prefix": prefix, "status": status, "at": now, "priority": priority,
                 "cancel": cancel, "offset": offset, "n": BACKLOG},
            )  # fmt: skip
    return now


def _nested_plans(
    url: str, statements: list[tuple[str, dict[str, Any]]], analyze: bool
) -> list[str]:
    """The plan of each statement run inside ``claim_lookup``, as auto_explain logs it."""
    import psycopg

    schema = url.rsplit("schema=", 1)[1]
    notices: list[str] = []
    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        if analyze:
            conn.execute("ANALYZE runs")
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        for setting in ("log_min_duration = 0", "log_nested_statements = on",
                        "log_level = notice"):  # fmt: skip
            conn.execute(f"SET auto_explain.{setting}")
        for sql, params in statements:
            with conn.transaction(force_rollback=True):
                conn.execute(sql, params).fetchall()
    return [n for n in notices if "FROM runs AS r" in n]


@pytest.mark.parametrize("analyzed", [False, True], ids=["no-statistics", "analyzed"])
async def test_each_lookup_walks_its_partial_index_in_order(pg_url: str, analyzed: bool) -> None:
    now = await _fill(pg_url)
    statements = [
        ("SELECT * FROM claim_lookup(%(w)s, %(now)s, 100, %(lookup)s, true)",
         {"w": ["w"], "now": now, "lookup": lookup})
        for lookup in [*LOOKUPS, "executing"]
    ]  # fmt: skip
    plans = _nested_plans(pg_url, statements, analyzed)
    assert len(plans) == len(statements), plans
    for (lookup, index), plan in zip(LOOKUPS.items(), plans, strict=False):
        assert re.search(rf"Index Scan using {index} on runs", plan), (lookup, plan)
        for avoided in ("Sort", "Bitmap", "Seq Scan"):
            assert avoided not in plan, (lookup, avoided, plan)
    executing = plans[-1]
    assert "Index Scan" in executing and "Seq Scan" not in executing, executing


async def test_a_claim_takes_its_batch_in_order_past_a_backlog(pg_url: str) -> None:
    """What the plans buy: with the backlog above, a claim of 100 gets the 100 runs due
    first (ranked ahead of plain), cancels those asked to, and times out parked ones."""
    await _fill(pg_url)
    store = open_store(pg_url)
    await store.open()
    try:
        batch = await store.claim(["w"], 100, 60.0, None)
        ids = [c.run.id for c in batch.runs]
        assert ids == [f"p{i}" for i in range(1, 101)]
        # With every ranked run gone, the full claim (a capped workflow takes it) merges
        # the ready runs with the parked past their deadline, in due order; those asked
        # to cancel are ended, not returned.
        import psycopg

        schema = pg_url.rsplit("schema=", 1)[1]
        with psycopg.connect(pg_url.split("?")[0], autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            conn.execute("DELETE FROM runs WHERE id LIKE 'p%%'")
        batch = await store.claim(["w"], 6, 60.0, {"w": 10 * BACKLOG})
        assert [c.run.id for c in batch.runs] == ["q1", "w1", "q2", "w2", "q3", "w3"]
        cancelled = [await store.get_run(f"c{i}") for i in (1, 2, 3)]
        assert [found[0].status if found else None for found in cancelled] == ["cancelled"] * 3
        # The plain claim takes ready runs in due order past the same backlog.
        batch = await store.claim(["w"], 3, 60.0, None)
        assert [c.run.id for c in batch.runs] == ["q4", "q5", "q6"]
    finally:
        await store.close()
