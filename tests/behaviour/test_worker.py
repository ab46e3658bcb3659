"""The worker: push wake-ups, timers from due_at, concurrency and shutdown."""

from __future__ import annotations

import asyncio
import threading
import time

import tarry

from helpers import wait_for_status


async def test_idle_worker_wakes_on_start_without_polling(app) -> None:
    @app.workflow("ping")
    async def ping(ctx, step):
        return time.perf_counter()

    async with app.worker():
        await asyncio.sleep(0.3)  # the worker is idle, with nothing due
        sent = time.perf_counter()
        done = await app.result(await app.start("ping"), timeout=10)
    assert done - sent < 1.0


async def test_timers_fire_while_the_worker_sleeps(app) -> None:
    # On the wall clock on purpose: the worker sleeping on a SystemClock until a
    # timer is due. The same on a moved clock: test_clock.py, test_testing.py.
    @app.workflow("timer")
    async def timer(ctx, step):
        await step.sleep("t", "250ms")
        return time.time()

    async with app.worker():
        run_id = await app.start("timer")
        await wait_for_status(app, run_id, "waiting")
        started = time.time()
        woke = await app.result(run_id, timeout=10)
    assert 0.1 <= woke - started < 2.0


async def test_worker_concurrency_caps_executing_runs(app) -> None:
    running = 0
    peak = 0

    @app.workflow("busy")
    async def busy(ctx, step):
        async def work():
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            running -= 1

        await step.run("work", work)

    ids = [await app.start("busy") for _ in range(12)]
    async with app.worker(concurrency=3):
        for run_id in ids:
            await app.result(run_id, timeout=10)
    assert peak == 3


async def test_stopping_a_worker_hands_in_flight_runs_back(make_app) -> None:
    app = make_app(lease="30s")
    started = asyncio.Event()
    calls: list[int] = []

    @app.workflow("long")
    async def long(ctx, step):
        async def work():
            calls.append(1)
            if len(calls) == 1:
                started.set()
                await asyncio.sleep(60)
            return "done"

        return await step.run("work", work)

    async with app.worker():
        run_id = await app.start("long")
        await asyncio.wait_for(started.wait(), 10)
    assert (await app.get_run(run_id)).status == "queued"  # not stuck behind a 30 s lease
    async with app.worker():
        assert await app.result(run_id, timeout=10) == "done"
    assert len(calls) == 2


async def test_workers_claim_only_their_own_workflows(make_app) -> None:
    producer = make_app()

    @producer.workflow("theirs")
    async def theirs(ctx, step):
        return "theirs"

    other = make_app()

    @other.workflow("mine")
    async def mine(ctx, step):
        return "mine"

    run_id = await producer.start("theirs")
    async with other.worker():
        await asyncio.sleep(0.3)
        assert (await other.get_run(run_id)).status == "queued"
    async with producer.worker():
        assert await producer.result(run_id, timeout=10) == "theirs"


async def test_a_worker_stopped_before_its_loop_starts_returns(app) -> None:
    @app.workflow("noop")
    async def noop(ctx, step):
        return None

    async def enter_and_leave() -> None:
        async with app.worker():
            pass  # stop() comes before the worker's task has run at all

    await asyncio.wait_for(enter_and_leave(), 10)
    await asyncio.wait_for(enter_and_leave(), 10)  # and again, on the same App


async def test_sync_step_functions_run_as_many_at_once_as_the_worker_runs_runs(app) -> None:
    # More than asyncio's default pool (at most 32 threads) ever holds: every step
    # function must be running at once for the barrier to open.
    runs = 40
    barrier = threading.Barrier(runs, timeout=10)

    @app.workflow("meet")
    async def meet(ctx, step):
        return await step.run("meet", barrier.wait)

    ids = [await app.start("meet") for _ in range(runs)]
    async with app.worker(concurrency=runs):
        places = [await app.result(run_id, timeout=30) for run_id in ids]
    assert sorted(places) == list(range(runs))


def test_app_module_exports() -> None:
    assert set(tarry.__all__) >= {"App", "Context", "Step", "StepFailed", "SignalConflict"}
