"""A signal or message sent on the loop of a worker that takes the woken run's
workflow: the delivery's transaction leases the run to that worker, which executes
it with no claim (``worker_starts``, ``Handoff``): woken in place where it sleeps
there (sticky execution), else replayed from the steps the delivery read. Where the
sleeper is gone by the time the delivery commits, the run is replayed from its
steps; where the delivery does not make the run due, nothing is taken; a claim in
flight gives back what the slot a hand-off took leaves no room for."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

import tarry
from tarry.store.base import ClaimBatch
from tarry.worker import Worker

from .test_sticky import add_agent
from helpers import spy_claims, wait_for_status


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[tarry.App]:
    """An App on each store: both hand a woken run to a worker of the sender's loop
    (``wakes_leased``)."""
    made = tarry.App(database_url, lease="2s")
    try:
        yield made
    finally:
        await made.close()


def claims_of_its_start(app: tarry.App) -> int:
    """The claims a run started here takes before any hand-off: none where the store
    hands a start to the worker at once (SQLite), else the one claim that starts it."""
    store: Any = app._store
    return 0 if store.starts_leased else 1


async def asleep(worker: Worker, run_id: str) -> None:
    """Until the run sleeps in the worker, no claim of the worker is in flight and the
    last one left no backlog: where a claim started the run (PostgreSQL), it filled
    the worker's slots, and the worker takes no hand-off until a claim since has
    found no more due runs."""
    for _ in range(1000):
        if run_id in worker._sleepers.ids() and not worker._claiming and not worker._backlog:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"run {run_id} never fell asleep in the worker")


async def running(
    app: tarry.App, concurrency: int = 4, *, sticky: bool = True
) -> tuple[Worker, asyncio.Task[None]]:
    """A worker keeping every parked run asleep, short ones too (``sticky=False``:
    none), once its first claim is over (it takes starts from then)."""
    worker = app._worker(concurrency, sticky=sticky)
    await app._open()
    task = asyncio.create_task(worker.run())
    for _ in range(1000):
        if worker.loop is not None and not worker._claiming and not worker._backlog:
            return worker, task
        await asyncio.sleep(0.005)
    raise AssertionError("the worker never became idle")


async def stopped(worker: Worker, task: asyncio.Task[None]) -> None:
    worker.stop()
    await task


async def test_a_message_wakes_a_run_asleep_here_without_a_claim(app: tarry.App) -> None:
    calls: Counter[str] = Counter()
    add_agent(app, calls)
    claimed = spy_claims(app)
    worker, task = await running(app)
    try:
        run_id = await app.start("agent")
        for turn in range(3):
            await asleep(worker, run_id)
            await app.send_message(run_id, "next", {"turn": turn})
            if turn < 2:  # leased by the delivery's own commit
                assert (await app.get_run(run_id)).status in ("running", "waiting")
        assert await app.result(run_id, timeout=10) == 30
        assert worker._reserved == 0
    finally:
        await stopped(worker, task)
    # Started eagerly or by one claim, then woken three times by hand-offs.
    assert claimed.count(run_id) == claims_of_its_start(app)
    assert calls == {"handler entered": 1, "work-0": 1, "work-1": 1, "work-2": 1}


async def test_a_signal_wakes_a_run_asleep_here_without_a_claim(app: tarry.App) -> None:
    @app.workflow("approve")
    async def approve(ctx: tarry.Context, step: tarry.Step) -> Any:
        decision = await step.wait_for_signal(
            "decision", signal=f"order-{ctx.payload['n']}", timeout="1d"
        )
        return await step.run("apply", lambda: decision)

    claimed = spy_claims(app)
    worker, task = await running(app)
    try:
        run_id = await app.start("approve", {"n": 1})
        await asleep(worker, run_id)
        result = await app.send_signal("order-1", {"ok": True})
        assert result.status == "delivered"
        assert (await app.get_run(run_id)).status in ("running", "completed")
        assert await app.result(run_id, timeout=10) == {"ok": True}
    finally:
        await stopped(worker, task)
    assert claimed.count(run_id) == claims_of_its_start(app)


async def test_a_run_parked_but_not_asleep_here_is_handed_over_with_its_steps(
    app: tarry.App,
) -> None:
    calls: Counter[str] = Counter()
    add_agent(app, calls)
    claimed = spy_claims(app)
    worker, task = await running(app, sticky=False)
    try:
        run_id = await app.start("agent")
        for turn in range(3):
            await wait_for_status(app, run_id, "waiting")
            while worker._active or worker._claiming:  # its execution unwound
                await asyncio.sleep(0.005)
            await app.send_message(run_id, "next", {"turn": turn})
        assert await app.result(run_id, timeout=10) == 30
        assert worker._reserved == 0 and len(worker._sleepers) == 0
    finally:
        await stopped(worker, task)
    # Each resume leased by its delivery, then replayed: no claim after its start.
    assert claimed.count(run_id) == claims_of_its_start(app)
    assert calls == {"handler entered": 4, "work-0": 1, "work-1": 1, "work-2": 1}


async def test_a_run_unwound_before_the_delivery_commits_is_replayed_with_its_steps(
    app: tarry.App,
) -> None:
    calls: Counter[str] = Counter()
    add_agent(app, calls)
    worker, task = await running(app)
    try:
        run_id = await app.start("agent")
        await asleep(worker, run_id)
        await app.send_message(run_id, "next", {"turn": 0})
        await asleep(worker, run_id)
        handoff = worker.offer_wake()
        assert handoff is not None
        store: Any = app._store
        status = await store.send_message(run_id, "next", b'{"turn": 1}', handoff=handoff)
        assert status == "delivered" and handoff.taken is not None
        worker._sleepers.expire(float("inf"))  # its window passed meanwhile: unwound
        worker.adopt_wake(handoff)
        await wait_for_status(app, run_id, "waiting")
        await asleep(worker, run_id)
        await app.send_message(run_id, "next", {"turn": 2})
        assert await app.result(run_id, timeout=10) == 30
        assert worker._reserved == 0
    finally:
        await stopped(worker, task)
    # Replayed once, from the store: no step ran twice.
    assert calls == {"handler entered": 2, "work-0": 1, "work-1": 1, "work-2": 1}


async def test_a_delivery_that_leaves_the_run_waiting_takes_nothing(app: tarry.App) -> None:
    @app.workflow("both")
    async def both(ctx: tarry.Context, step: tarry.Step) -> Any:
        got = await step.wait_for_all(
            "both", [tarry.signal("a-1"), tarry.signal("b-1")], timeout="1d"
        )
        return got

    claimed = spy_claims(app)
    worker, task = await running(app)
    try:
        run_id = await app.start("both")
        await asleep(worker, run_id)
        await app.send_signal("a-1", 1)  # one of two: still waiting, nothing leased
        assert (await app.get_run(run_id)).status == "waiting"
        assert worker._reserved == 0 and run_id in worker._sleepers.ids()
        await app.send_signal("b-1", 2)
        assert await app.result(run_id, timeout=10) == [1, 2]
    finally:
        await stopped(worker, task)
    assert claimed.count(run_id) == claims_of_its_start(app)


async def test_a_claim_in_flight_gives_back_what_a_handoff_left_no_slot_for(
    app: tarry.App, database_url: str
) -> None:
    working = asyncio.Event()
    done_working = asyncio.Event()

    @app.workflow("agent")
    async def agent_(ctx: tarry.Context, step: tarry.Step) -> int:
        await step.wait_for_message("next", timeout="1d")

        async def work() -> int:
            working.set()
            await done_working.wait()
            return 1

        return await step.run("work", work)

    @app.workflow("later")
    async def later(ctx: tarry.Context, step: tarry.Step) -> int:
        return await step.run("only", lambda: 2)

    store: Any = app._store
    claim = store.claim
    gate = asyncio.Event()
    gate.set()
    returned: list[str] = []

    async def gated(*args: Any, **kwargs: Any) -> ClaimBatch:
        await gate.wait()
        batch: ClaimBatch = await claim(*args, **kwargs)
        returned.extend(c.run.id for c in batch.runs)
        return batch

    store.claim = gated
    worker, task = await running(app, concurrency=1)
    other = tarry.App(database_url)  # no worker here: its starts are queued
    try:
        run_id = await app.start("agent")
        await asleep(worker, run_id)
        gate.clear()
        queued = await other.start("later")  # seen by the worker, which claims...
        for _ in range(1000):
            if worker._claiming:
                break
            await asyncio.sleep(0.005)
        assert worker._claiming  # ...with its one slot free, and waits at the gate
        await app.send_message(run_id, "next", {})  # handed off: the slot is taken
        await asyncio.wait_for(working.wait(), 10)
        gate.set()  # the claim goes on and leases the queued run
        for _ in range(1000):
            if queued in returned and not worker._claiming:
                break
            await asyncio.sleep(0.005)
        assert queued in returned
        # No room for it: handed back, due for the next claim, never run beside the other.
        await wait_for_status(app, queued, "queued")
        assert list(worker._active) == [run_id]
        done_working.set()
        assert await app.result(run_id, timeout=10) == 1
        assert await app.result(queued, timeout=10) == 2
    finally:
        gate.set()  # a claim held at the gate would keep the worker from stopping
        done_working.set()
        await stopped(worker, task)
        await other.close()
