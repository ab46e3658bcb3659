"""Sticky execution, on both stores: a run that parks stays asleep in the worker
that parked it and, claimed there again, goes on without replaying its history;
when anything but its waits changed in the store meanwhile it is replayed
instead. Both paths give the same results and run no step twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

import tarry
from tarry.errors import Suspend
from tarry.sticky import Sleepers
from tarry.testing import Environment

from helpers import step


def agent_app(calls: Counter[str]) -> tarry.App:
    app = tarry.App("sqlite:///:memory:")
    add_agent(app, calls)
    return app


def add_agent(app: tarry.App, calls: Counter[str]) -> None:
    """The ``agent`` workflow: three turns of a message and a step, each counted."""

    def work(turn: int) -> int:
        calls[f"work-{turn}"] += 1
        return turn * 10

    @app.workflow("agent")
    async def agent(ctx, step):
        calls["handler entered"] += 1
        total = 0
        for _ in range(3):
            message = await step.wait_for_message("next", timeout="1d")
            total += await step.run("work", work, message.data["turn"])
        return total


@pytest.mark.parametrize("sticky", [True, False])
async def test_resumes_give_the_same_results_with_or_without_a_replay(
    database_url: str, sticky: bool
) -> None:
    calls: Counter[str] = Counter()
    async with Environment(agent_app(calls), database=database_url, sticky=sticky) as env:
        run_id = await env.start("agent")
        for turn in range(3):
            assert (await env.waiting(run_id)).kind == "message"  # type: ignore[union-attr]
            await env.send_message(run_id, "next", {"turn": turn})
        assert await env.result(run_id) == 30
        run = await env.get_run(run_id)
    assert [s.id for s in run.steps] == ["next", "work", "next:1", "work:1", "next:2", "work:2"]
    assert {k: v for k, v in calls.items() if k.startswith("work")} == {
        "work-0": 1, "work-1": 1, "work-2": 1
    }  # fmt: skip
    # Asleep in the worker, the handler was entered once; replayed, once per resume.
    assert calls["handler entered"] == (1 if sticky else 4)


async def test_a_run_changed_elsewhere_while_asleep_is_replayed(database_url: str) -> None:
    calls: Counter[str] = Counter()
    async with Environment(agent_app(calls), database=database_url) as env:
        run_id = await env.start("agent")
        await env.send_message(run_id, "next", {"turn": 0})
        await env.run_until_idle()  # asleep at its second wait
        assert len(env._running()._sleepers) == 1
        # Cancelled and retried meanwhile: its wait's record is gone and filed anew,
        # so the sleeping handler no longer matches the store; it is replayed.
        await env.cancel(run_id, "oops")
        await env.app.retry(run_id)
        await env.run_until_idle()
        for turn in (1, 2):
            await env.send_message(run_id, "next", {"turn": turn})
        assert await env.result(run_id) == 30
        run = await env.get_run(run_id)
    assert calls["work-0"] == 1 and calls["work-1"] == 1 and calls["work-2"] == 1
    assert calls["handler entered"] >= 2  # the stale sleeper was unwound and replayed
    assert step(run, "work").output == 0


async def test_settling_counts_a_stale_sleeper_until_its_replay_executes(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Counter[str] = Counter()
    async with Environment(agent_app(calls), database=database_url) as env:
        run_id = await env.start("agent")
        await env.run_until_idle()  # asleep at its first wait
        store = env._running().store
        read_steps = store.get_runs

        async def slow_read(*args: object, **kwargs: object) -> object:
            await asyncio.sleep(0.05)  # the replay's read of the steps, on a slow store
            return await read_steps(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "get_runs", slow_read)
        await env.cancel(run_id, "oops")
        await env.app.retry(run_id)
        # Idle only once the replay has parked the run again: between the unwinding
        # and the replay's read the run is neither executing nor claimable.
        assert (await env.waiting(run_id)) is not None
    assert calls["handler entered"] == 2


async def test_the_oldest_sleeper_is_unwound_to_make_room() -> None:
    sleepers = Sleepers(limit=2)
    loop = asyncio.get_running_loop()
    task = loop.create_task(asyncio.sleep(0))
    first = sleepers.put("a", task, None, 1.0)  # type: ignore[arg-type]
    second = sleepers.put("b", task, None, 2.0)  # type: ignore[arg-type]
    third = sleepers.put("c", task, None, 3.0)  # type: ignore[arg-type]
    assert list(sleepers.ids()) == ["b", "c"]
    with pytest.raises(Suspend, match="evicted"):
        await first
    assert not second.done() and not third.done()
    sleepers.expire(before=2.5)  # asleep since 2.0: its window has passed
    assert list(sleepers.ids()) == ["c"]
    with pytest.raises(Suspend, match="whole window"):
        await second
    await sleepers.close()
    with pytest.raises(Suspend):
        await third
    await task


async def test_a_run_asleep_past_its_window_holds_nothing_and_is_replayed(
    database_url: str,
) -> None:
    calls: Counter[str] = Counter()
    app = agent_app(calls)
    async with Environment(app, database=database_url) as env:
        run_id = await env.start("agent")
        await env.run_until_idle()
        assert len(env._running()._sleepers) == 1
        await env.advance("31s")  # past the 30 s window (App(sticky_for=...))
        assert len(env._running()._sleepers) == 0
        for turn in range(3):
            await env.send_message(run_id, "next", {"turn": turn})
        assert await env.result(run_id) == 30
    assert calls["handler entered"] == 2  # once, then the replay after the window


async def test_parallel_branches_sleep_and_wake_together(database_url: str) -> None:
    app = tarry.App("sqlite:///:memory:")
    entered: Counter[str] = Counter()

    @app.workflow("pair")
    async def pair(ctx, step):
        entered["handler"] += 1
        return await asyncio.gather(
            step.wait_for_signal("x", signal=f"x:{ctx.run_id}", timeout="1d"),
            step.wait_for_signal("y", signal=f"y:{ctx.run_id}", timeout="1d"),
        )

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("pair")
        await env.run_until_idle()
        await env.send_signal(f"x:{run_id}", 1)
        await env.run_until_idle()
        assert (await env.get_run(run_id)).status == "waiting"
        await env.send_signal(f"y:{run_id}", 2)
        assert await env.result(run_id) == [1, 2]
    assert entered["handler"] == 1


@pytest.mark.parametrize("woken", [True, False])
async def test_a_renewal_stops_a_run_only_for_the_lease_it_renewed(
    database_url: str, woken: bool
) -> None:
    """A run woken under a new lease (sticky execution) while a renewal of the lease it
    slept under is on its way: that renewal finds the old lease gone, and must not
    stop the run for it. A lease taken over by anyone else still stops it."""
    app = tarry.App(database_url, lease="30s")
    release = asyncio.Event()

    @app.workflow("hold")
    async def hold(ctx: tarry.Context, step: tarry.Step) -> int:
        return await step.run("held", _held, release)

    # One slot, held by the run: the worker's own claim loop cannot take the run the
    # renewal below releases ahead of the test's claim (it would wake it in place).
    worker = app._worker(1)
    await app._open()
    task = asyncio.create_task(worker.run())
    try:
        run_id = await app.start("hold")
        while run_id not in worker._active:
            await asyncio.sleep(0.005)
        execution, attempt = worker._active[run_id]
        store = worker.store
        renew = store.renew

        async def renew_after_a_new_lease(leases: Any, seconds: float) -> Any:
            # Meanwhile the run is leased anew: to this attempt (as a wake in place
            # does) or to somebody else (a takeover).
            await store.release(attempt.lease)
            batch = await store.claim(["hold"], 1, 30.0)
            if woken:
                attempt.resume(batch.runs[0])
            return await renew(leases, seconds)

        store.renew = renew_after_a_new_lease  # type: ignore[method-assign]
        await worker._renew_active()
        store.renew = renew  # type: ignore[method-assign]
        # The renewal asks for the stop itself; how soon the task winds down is the
        # loop's business, so wait for that rather than for a fixed time.
        assert bool(execution.cancelling()) is not woken
        if not woken:
            await asyncio.wait({execution}, timeout=10)
            assert execution.cancelled()
        else:
            release.set()
            assert await app.result(run_id, timeout=10) == 1
    finally:
        release.set()
        worker.stop()
        await task
        await app.close()


async def _held(release: asyncio.Event) -> int:
    await release.wait()
    return 1
