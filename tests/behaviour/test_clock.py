"""The App's clock: timers, deadlines and backoffs move with it, not with the wall.

A ``ManualClock`` stands still until the test moves it; moving it wakes the idle
worker, so a week-long wait takes a clock move and no real time.
"""

from __future__ import annotations

import asyncio

import pytest

import tarry
from tarry.clock import ManualClock

from helpers import step, wait_for_status

WEEK = 7 * 86400


async def test_a_week_long_sleep_takes_one_move_of_the_clock(make_app) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)
    began = clock.now()

    @app.workflow("nap")
    async def nap(ctx, step):
        await step.sleep("s", "7d")
        return "up"

    async with app.worker():
        run_id = await app.start("nap")
        run = await wait_for_status(app, run_id, "waiting")
        assert run.waiting_for is not None and run.waiting_for.expires_at is not None
        assert run.waiting_for.expires_at.timestamp() == pytest.approx(began + WEEK)
        assert step(run, "s").started_at.timestamp() == pytest.approx(began)
        clock.advance("7d")
        assert await app.result(run_id, timeout=10) == "up"


async def test_a_wait_times_out_when_the_clock_passes_its_deadline(make_app) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)

    @app.workflow("approval")
    async def approval(ctx, step):
        return await step.wait_for_signal("w", signal="approve", timeout="3d")

    async with app.worker():
        run_id = await app.start("approval")
        await wait_for_status(app, run_id, "waiting")
        clock.advance("2d")
        assert (await app.get_run(run_id)).status == "waiting"
        clock.advance("1d")
        assert await app.result(run_id, timeout=10) is None


async def test_a_retry_after_waits_for_the_clock(make_app) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)
    tried: list[float] = []

    async def flaky() -> int:
        tried.append(clock.now())
        if len(tried) == 1:
            raise tarry.RetryAfter("1h")
        return len(tried)

    @app.workflow("flaky")
    async def flaky_flow(ctx, step):
        return await step.run("flaky", flaky)

    async with app.worker():
        run_id = await app.start("flaky")
        while not tried:
            await asyncio.sleep(0.01)
        await wait_for_status(app, run_id, "queued")
        clock.advance("1h")
        assert await app.result(run_id, timeout=10) == 2
    assert tried[1] - tried[0] == pytest.approx(3600)


async def test_lookback_windows_count_back_from_the_clock(make_app) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)

    @app.workflow("late")
    async def late(ctx, step):
        found = await step.wait_for_event(
            "e", event="app/ping", timeout=None, lookback=ctx.payload["lookback"]
        )
        return found.data

    await app.send_event("app/ping", {"n": 1})
    clock.advance("2h")
    async with app.worker():
        found = await app.start("late", {"lookback": "3h"})
        missed = await app.start("late", {"lookback": "1h"})
        assert await app.result(found, timeout=10) == {"n": 1}
        assert (await wait_for_status(app, missed, "waiting")).status == "waiting"


async def test_an_in_memory_store_and_a_manual_clock_run_a_week_long_sleep() -> None:
    clock = tarry.ManualClock()
    app = tarry.App("sqlite:///:memory:", clock=clock)

    @app.workflow("cool-off")
    async def cool_off(ctx: tarry.Context, step: tarry.Step) -> str:
        await step.sleep("cool-off", "7d")
        return "done"

    try:
        async with app.worker():
            run_id = await app.start("cool-off")
            while (await app.get_run(run_id)).status != "waiting":
                await asyncio.sleep(0.005)
            clock.advance("7d")
            assert await app.result(run_id, timeout=10) == "done"
        # Another App's in-memory database is its own.
        other = tarry.App("sqlite:///:memory:")
        try:
            assert (await other.list_runs()).items == []
        finally:
            await other.close()
    finally:
        await app.close()
