"""A start made where a worker of the App runs with room: taken at once, without a
claim (``worker_starts``); queued as before where the worker could not take it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import tarry
from tarry.store.base import NewRun

from helpers import spy_claims, wait_for_status


@pytest.fixture
async def app(sqlite_url: str) -> AsyncIterator[tarry.App]:
    """An App on SQLite, the store whose starts a worker takes (``starts_leased``)."""
    made = tarry.App(sqlite_url, lease="2s")
    try:
        yield made
    finally:
        await made.close()


async def idle(worker: Any) -> None:
    """Until the worker runs and its first claim is over: it takes starts from then."""
    for _ in range(1000):
        if worker.loop is not None and not worker._claiming and not worker._backlog:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the worker never became idle")


def gate_workflow(app: tarry.App, name: str = "gate", **options: Any) -> asyncio.Event:
    """A workflow that runs a step, then holds its slot until the event is set."""
    release = asyncio.Event()

    @app.workflow(name, **options)
    async def gate(ctx: tarry.Context, step: tarry.Step) -> int:
        await step.run("first", lambda: 1)
        await release.wait()
        return 2

    return release


async def test_a_start_is_taken_by_the_worker_on_its_loop_without_a_claim(
    app: tarry.App,
) -> None:
    release = gate_workflow(app)
    claimed = spy_claims(app)
    async with app.worker(concurrency=4) as worker:
        await idle(worker)
        run_id = await app.start("gate")
        # Leased when start returns: no worker claim was needed to run it.
        assert (await app.get_run(run_id)).status == "running"
        release.set()
        assert await app.result(run_id, timeout=10) == 2
    assert run_id not in claimed
    run = await app.get_run(run_id)
    assert [s.id for s in run.steps] == ["first"]


async def test_a_start_the_worker_has_no_room_for_is_queued_for_its_claim(
    app: tarry.App,
) -> None:
    release = gate_workflow(app)
    claimed = spy_claims(app)
    async with app.worker(concurrency=1) as worker:
        await idle(worker)
        busy = await app.start("gate")
        await wait_for_status(app, busy, "running")
        queued = await app.start("gate")
        assert (await app.get_run(queued)).status == "queued"
        release.set()
        assert await app.result(busy, timeout=10) == 2
        assert await app.result(queued, timeout=10) == 2
    assert busy not in claimed and queued in claimed


@pytest.mark.parametrize("options", [{"concurrency": 1}, {"rate_limit": tarry.rate(100, "1s")}])
async def test_a_workflow_with_a_cap_or_flow_rules_is_always_claimed(
    app: tarry.App, options: dict[str, Any]
) -> None:
    release = gate_workflow(app, **options)
    release.set()
    claimed = spy_claims(app)
    async with app.worker(concurrency=4) as worker:
        await idle(worker)
        run_id = await app.start("gate")
        assert await app.result(run_id, timeout=10) == 2
    assert run_id in claimed


async def test_a_start_taken_as_the_worker_stops_is_handed_back_queued(app: tarry.App) -> None:
    gate_workflow(app)
    async with app.worker(concurrency=4) as worker:
        await idle(worker)
        lease = worker.take("r-1", "gate")
        assert lease is not None
        store: Any = app._store
        _, created, row = await store.start_leased(
            NewRun("r-1", "gate", b"{}"), lease, app.settings.lease
        )
        assert created and row is not None
        worker.stop()
        worker.adopt(row, lease)
        for _ in range(200):  # the release is a write of its own, on this loop
            if (await app.get_run("r-1")).status == "queued":
                break
            await asyncio.sleep(0.01)
    run = await app.get_run("r-1")
    assert run.status == "queued"  # due now, for the next worker, not at the lease's end


async def test_the_same_run_id_started_twice_runs_once(app: tarry.App) -> None:
    release = gate_workflow(app)
    async with app.worker(concurrency=4) as worker:
        await idle(worker)
        first, second = await asyncio.gather(
            app.start("gate", run_id="order-1"), app.start("gate", run_id="order-1")
        )
        assert first == second == "order-1"
        assert worker._reserved == 0  # the second start's slot was let go
        release.set()
        assert await app.result("order-1", timeout=10) == 2


async def test_runs_started_one_after_another_begin_in_that_order(app: tarry.App) -> None:
    began: list[int] = []
    release = asyncio.Event()

    @app.workflow("ordered")
    async def ordered(ctx: tarry.Context, step: tarry.Step) -> int:
        n: int = ctx.payload["n"]
        await step.run("begin", lambda: began.append(n))
        if n == 0:
            await release.wait()
        return n

    async with app.worker(concurrency=1) as worker:
        await idle(worker)
        first = await app.start("ordered", {"n": 0})  # taken: holds the only slot
        queued = await app.start("ordered", {"n": 1})  # no room: queued
        release.set()
        assert await app.result(first, timeout=10) == 0
        # The slot is free now, and the queued run may not be claimed yet: this
        # start must not be taken ahead of it.
        later = await app.start("ordered", {"n": 2})
        assert [await app.result(r, timeout=10) for r in (queued, later)] == [1, 2]
    assert began == [0, 1, 2]
