"""Races between processes' transactions on one signal key, one mailbox, one child
run or one capped workflow: two stores (two pools, two I/O loops) stand in for two
processes."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import orjson
import psycopg

from tarry.conditions import EventCondition
from tarry.store.base import (
    ClaimedRun,
    EventWait,
    InvokeWait,
    MessageWait,
    NewEvent,
    NewRun,
    SignalWait,
    WaitSpec,
)
from tarry.store.matching import resolve_filing
from tarry.store.postgres import PostgresStore

RUNS = 200


def signal_wait(key: str) -> WaitSpec:
    condition = SignalWait(key, on_conflict="fail")
    return WaitSpec("w", "signal", None, b"{}", (condition,))


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
        spec = signal_wait(f"key-{claimed.run.id}")
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
        spec = signal_wait(f"key-{claimed.run.id}")
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


async def test_a_capped_workflow_never_has_more_leases_than_its_cap(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = stores
    cap = 5
    for n in range(60):
        await a.create_run(NewRun(f"r{n}", "wf", b"{}"))
    held: list[ClaimedRun] = []
    finished = 0
    while finished < 60:
        # Many claims from both "processes" at once: together they may lease only
        # what the cap leaves room for.
        batches = await asyncio.gather(
            *(store.claim(["wf", "other"], 10, 60, {"wf": cap}) for store in (a, b) * 6)
        )
        for batch in batches:
            held.extend(batch.runs)
            assert batch.next_due is not None or len(held) + finished == 60
        assert len(held) <= cap, f"{len(held)} runs leased under a cap of {cap}"
        assert held, "nothing claimed although the cap had room"
        # End a few, so the next round has room again.
        random.shuffle(held)
        for claimed in held[:2]:
            await b.finish(claimed.lease, "completed", b"null", None)
            finished += 1
        held = held[2:]


async def test_a_child_ending_while_its_parent_parks_always_resumes_the_parent(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = stores
    pairs = 100
    for n in range(pairs):
        await a.create_run(NewRun(f"p{n}", "parent", b"{}"))
        await a.create_run(NewRun(f"c{n}", "child", b"{}", parent=f"p{n}"))
    parents = {c.run.id: c for c in (await a.claim(["parent"], pairs, 60)).runs}
    children = {c.run.id: c for c in (await b.claim(["child"], pairs, 60)).runs}
    assert len(parents) == len(children) == pairs

    async def park(n: int) -> str:
        child = NewRun(f"c{n}", "child", b"{}", parent=f"p{n}")
        condition = InvokeWait(child)
        spec = WaitSpec("inv", "invoke", None, b"{}", (condition,))
        return (await a.park(parents[f"p{n}"].lease, spec)).outcome

    async def end(n: int) -> None:
        await b.finish(children[f"c{n}"].lease, "completed", b'{"n":%d}' % n, None)

    calls: list[Any] = [park(n) for n in range(pairs)] + [end(n) for n in range(pairs)]
    random.shuffle(calls)
    parked = await asyncio.gather(*calls)
    assert {"resolved", "parked"} >= set(parked) - {None}
    for n in range(pairs):
        found = await a.get_run(f"p{n}")
        assert found is not None
        run, steps = found
        assert [(s.key, s.status) for s in steps] == [("inv", "completed")], (n, run.status)
        assert steps[0].output is not None
        assert orjson.loads(steps[0].output) == {
            "status": "completed",
            "output": {"n": n},
            "error": None,
        }
        assert run.status in ("running", "queued"), (n, run.status)


async def test_a_message_sent_while_its_run_parks_is_taken_once(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = stores
    for n in range(RUNS):
        await a.create_run(NewRun(f"r{n}", "wf", b"{}"))
    batch = await a.claim(["wf"], RUNS, 60)

    async def park(n: int) -> tuple[str, int, str]:
        condition = MessageWait("go")
        spec = WaitSpec("m", "message", time.time() + 60, b"{}", (condition,))
        return "park", n, (await a.park(batch.runs[n].lease, spec)).outcome

    async def send(n: int) -> tuple[str, int, str]:
        return "send", n, await b.send_message(batch.runs[n].run.id, "go", b"%d" % n)

    calls = [park(n) for n in range(RUNS)] + [send(n) for n in range(RUNS)]
    random.shuffle(calls)
    outcomes: dict[tuple[str, int], str] = {}
    for kind, n, status in await asyncio.gather(*calls):
        outcomes[kind, n] = status
    for n in range(RUNS):
        pair = (outcomes["park", n], outcomes["send", n])
        assert pair in {("resolved", "queued"), ("parked", "delivered")}, (n, pair)
        run_id = batch.runs[n].run.id
        found = await a.get_run(run_id)
        assert found is not None
        steps = found[1]
        assert [(s.key, s.status) for s in steps] == [("m", "completed")]
        assert steps[0].output is not None
        assert orjson.loads(steps[0].output)["data"] == n
        messages = await a.list_messages(run_id)
        assert [(m.name, m.consumed_by) for m in messages] == [("go", "m")]


async def test_an_event_sent_while_its_run_parks_is_never_lost(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """Parks on one event name, each on its own value, race sends of those values:
    with the path already indexed they lock only their value, yet every event is
    either found by its wait's lookback or delivered to its waiter."""
    a, b = stores
    filing = EventCondition.build("race/e", "data.k", None, "test").filing()

    def event_wait(payload: Any) -> WaitSpec:
        condition = EventWait(resolve_filing(filing, {"data": payload}), since=0.0)
        return WaitSpec("w", "event", None, b"{}", (condition,))

    # A first wait files the path data.k (it locks the whole name, once).
    await a.create_run(NewRun("first", "wf", b"{}"))
    first = (await a.claim(["wf"], 1, 60)).runs[0]
    assert (await a.park(first.lease, event_wait({"k": "none"}))).outcome == "parked"
    for n in range(RUNS):
        await a.create_run(NewRun(f"r{n}", "wf", b"{}"))
    batch = await a.claim(["wf"], RUNS, 60)
    assert len(batch.runs) == RUNS

    async def park(n: int) -> tuple[str, int, str]:
        claimed = batch.runs[n]
        return "park", n, (await a.park(claimed.lease, event_wait({"k": f"v{n}"}))).outcome

    async def send(n: int) -> tuple[str, int, str]:
        data = orjson.dumps({"k": f"v{n}"})
        outcome = await b.send_event(NewEvent(f"e{n}", "race/e", data, False), dedupe_seconds=60)
        return "send", n, "delivered" if outcome.resumed else "stored"

    calls = [park(n) for n in range(RUNS)] + [send(n) for n in range(RUNS)]
    random.shuffle(calls)
    outcomes = {(kind, n): status for kind, n, status in await asyncio.gather(*calls)}
    for n in range(RUNS):
        pair = (outcomes["park", n], outcomes["send", n])
        # Either the event came first and the wait's lookback found it, or the wait
        # filed its waiter first and the event was delivered to it.
        assert pair in {("resolved", "stored"), ("parked", "delivered")}, (n, pair)
        found = await a.get_run(batch.runs[n].run.id)
        assert found is not None
        assert [(s.key, s.status) for s in found[1]] == [("w", "completed")], n
