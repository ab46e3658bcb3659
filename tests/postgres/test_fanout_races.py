"""Races around one event resuming many runs (the set-based delivery): several
processes' events for the same parked runs, and cancels of some of those runs, at
once. Two stores (two pools, two I/O loops) stand in for two processes."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import orjson

from tarry.conditions import EventCondition
from tarry.store.base import EventWait, NewEvent, NewRun, WaitSpec
from tarry.store.matching import resolve_filing
from tarry.store.postgres import PostgresStore

RUNS = 300
SENDS = 6


async def park_all(store: PostgresStore) -> list[str]:
    """RUNS runs parked on ``race/fan`` with ``match="data.g"``, all for g = 1."""
    filing = EventCondition.build("race/fan", "data.g", None, "test").filing()
    condition = EventWait(resolve_filing(filing, {"data": {"g": 1}}), since=None)
    spec = WaitSpec("w", "event", None, b"{}", (condition,))
    for n in range(RUNS):
        await store.create_run(NewRun(f"r{n:04}", "wf", b"{}"))
    batch = await store.claim(["wf"], RUNS, 60)
    assert len(batch.runs) == RUNS
    for claimed in batch.runs:
        assert (await store.park(claimed.lease, spec)).outcome == "parked"
    return sorted(c.run.id for c in batch.runs)


def send(store: PostgresStore, n: int) -> Any:
    data = orjson.dumps({"g": 1, "n": n})
    return store.send_event(NewEvent(f"e{n}", "race/fan", data, False), dedupe_seconds=60)


async def test_events_at_once_resume_each_run_once(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """Events from two processes matching the same runs at once: they queue on the
    runs' locks instead of deadlocking, and each run is resumed by exactly one of
    them, whose data its step holds."""
    a, b = stores
    run_ids = await park_all(a)
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(send((a, b)[n % 2], n) for n in range(SENDS))), timeout=60
    )
    winners = {run_id: n for n, o in enumerate(outcomes) for run_id in o.resumed}
    assert sum(len(o.resumed) for o in outcomes) == RUNS  # nobody resumed twice
    assert sorted(winners) == run_ids
    for found in await a.get_runs(run_ids):
        run, steps = found
        assert run.status == "queued", run.id
        [stored] = steps
        assert stored.status == "completed"
        assert stored.output is not None
        assert orjson.loads(stored.output)["data"]["n"] == winners[run.id]


async def test_cancels_during_the_events_win_their_runs_or_lose_them_whole(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """Cancels of a third of the runs race the events: a run cancelled first keeps
    its wait unresolved and no event resumes it; a run an event resumed first holds
    that event (and is cancelled from the queue if its cancel came after)."""
    a, b = stores
    run_ids = await park_all(a)
    doomed = set(random.sample(run_ids, RUNS // 3))
    calls: list[Any] = [send((a, b)[n % 2], n) for n in range(SENDS)]
    calls += [(b, a)[i % 2].cancel(run_id, None) for i, run_id in enumerate(sorted(doomed))]
    random.shuffle(calls)
    results = await asyncio.wait_for(asyncio.gather(*calls), timeout=60)
    resumed = Counter(r for o in results if hasattr(o, "resumed") for r in o.resumed)
    assert all(count == 1 for count in resumed.values())
    for found in await a.get_runs(run_ids):
        run, steps = found
        [stored] = steps
        if run.id in resumed:
            assert run.status == ("cancelled" if run.id in doomed else "queued"), run.id
            assert stored.status == "completed", run.id
        else:
            assert run.id in doomed, run.id
            assert run.status == "cancelled", run.id
            assert stored.status != "completed", run.id
