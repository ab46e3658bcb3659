"""Races between processes' transactions on one signal key: two stores (two pools,
two I/O loops) stand in for two processes."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import psycopg
import pytest

from tarry.store.base import NewRun, WaitSpec
from tarry.store.postgres import PostgresStore

RUNS = 200


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_a_signal_sent_while_its_run_parks_is_never_lost(
    stores: tuple[PostgresStore, PostgresStore], pg_url: str
) -> None:
    a, b = stores
    for n in range(RUNS):
        await a.create_run(NewRun(f"r{n}", "wf", b"{}"))
    batch = await a.claim(["wf"], RUNS, 60)
    assert len(batch.runs) == RUNS

    async def park(n: int) -> tuple[str, int, str]:
        claimed = batch.runs[n]
        spec = WaitSpec("w", "signal", None, b"{}", signal_key=f"key-{claimed.run.id}")
        return "park", n, (await a.park(claimed.lease, spec)).outcome

    async def send(n: int) -> tuple[str, int, str]:
        key = f"key-{batch.runs[n].run.id}"
        outcome = await b.send_signal(key, b'"x"', strict=False, retention_seconds=60)
        return "send", n, outcome.status

    calls = [park(n) for n in range(RUNS)] + [send(n) for n in range(RUNS)]
    random.shuffle(calls)
    outcomes: dict[tuple[str, int], str] = {}
    for kind, n, status in await asyncio.gather(*calls):
        outcomes[kind, n] = status
    for n in range(RUNS):
        pair = (outcomes["park", n], outcomes["send", n])
        # Either the signal was buffered first and the wait consumed it, or the wait
        # registered first and the signal was delivered to it.
        assert pair in {("resolved", "buffered"), ("parked", "delivered")}, (n, pair)
        found = await a.get_run(batch.runs[n].run.id)
        assert found is not None
        run, steps = found
        assert [(s.key, s.status, s.output) for s in steps] == [("w", "completed", b'"x"')]
        assert run.status == ("running" if pair[0] == "resolved" else "queued")
    with psycopg.connect(pg_url.split("?")[0]) as conn:
        left = conn.execute(f'SELECT count(*) FROM "{a.schema}".signals').fetchone()
    assert left == (0,), "a buffered signal was left behind"


async def test_two_senders_never_both_win_one_waiter(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = stores
    for n in range(RUNS):
        await a.create_run(NewRun(f"r{n}", "wf", b"{}"))
    batch = await a.claim(["wf"], RUNS, 60)
    for claimed in batch.runs:
        spec = WaitSpec("w", "signal", None, b"{}", signal_key=f"key-{claimed.run.id}")
        assert (await a.park(claimed.lease, spec)).outcome == "parked"
    calls = [
        store.send_signal(f"key-{c.run.id}", data, strict=True, retention_seconds=60)
        for c in batch.runs
        for store, data in ((a, b'"a"'), (b, b'"b"'))
    ]
    random.shuffle(calls)
    results = await asyncio.gather(*calls)
    delivered = [r.run_id for r in results if r.status == "delivered"]
    assert sorted(delivered) == sorted(c.run.id for c in batch.runs)
    assert sum(r.status == "not_found" for r in results) == RUNS


async def test_a_claim_whose_caller_gave_up_hands_its_runs_back(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = stores
    for n in range(50):
        await a.create_run(NewRun(f"r{n}", "wf", b"{}"))
    for _ in range(20):  # cancel claims at various points of their transaction
        task = asyncio.create_task(a.claim(["wf"], 50, 60))
        await asyncio.sleep(random.uniform(0, 0.01))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            done = await task  # it finished before the cancel: give its runs back
            for claimed in done.runs:
                await a.release(claimed.lease)
    await asyncio.sleep(0.5)
    batch = await b.claim(["wf"], 50, 60)
    assert len(batch.runs) == 50, "runs were left leased to a caller that had gone"
