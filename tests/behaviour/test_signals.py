"""Keyed signals: delivery, buffering, retention, strict, conflicts, timeouts."""

from __future__ import annotations

from datetime import timedelta

import pytest

import tarry
from tarry.testing import Environment, NotEnded

from helpers import step, wait_for_status


def waiter_app(app: tarry.App, **wait_options) -> None:
    @app.workflow("waiter")
    async def waiter(ctx, step):
        return await step.wait_for_signal("w", signal=ctx.payload["key"], **wait_options)


async def test_delivered_to_the_waiting_run(app) -> None:
    waiter_app(app, timeout="1h")
    async with app.worker():
        run_id = await app.start("waiter", {"key": "order-1"})
        await wait_for_status(app, run_id, "waiting")
        result = await app.send_signal("order-1", {"approved": True})
        assert result == tarry.SignalResult("delivered", run_id)
        assert await app.result(run_id, timeout=10) == {"approved": True}
    record = step(await app.get_run(run_id), "w")
    assert (record.kind, record.status, record.output) == (
        "signal",
        "completed",
        {"approved": True},
    )


async def test_signals_sent_before_the_wait_are_buffered_and_consumed_fifo(app) -> None:
    @app.workflow("collector")
    async def collector(ctx, step):
        return [await step.wait_for_signal("w", signal="fifo", timeout="1h") for _ in range(3)]

    for n in (1, 2, 3):
        assert await app.send_signal("fifo", n) == tarry.SignalResult("buffered", None)
    async with app.worker():
        run_id = await app.start("collector")
        assert await app.result(run_id, timeout=10) == [1, 2, 3]
    # consumed: a second collector finds nothing buffered and parks
    async with app.worker():
        second = await app.start("collector")
        await wait_for_status(app, second, "waiting")


async def test_buffered_signal_expires_after_retention(make_app) -> None:
    clock = tarry.ManualClock()
    app = make_app(signal_retention="100ms", clock=clock)
    waiter_app(app, timeout="300ms")
    await app.send_signal("stale", "old news")
    clock.advance("99ms")
    assert (await app.send_signal("fresh", "new news")).status == "buffered"
    clock.advance("2ms")  # "stale" is 101 ms old, past its retention; "fresh" is not
    async with app.worker():
        run_id = await app.start("waiter", {"key": "stale"})
        await wait_for_status(app, run_id, "waiting")
        fresh = await app.start("waiter", {"key": "fresh"})
        assert await app.result(fresh, timeout=10) == "new news"
        clock.advance("300ms")  # the stale wait times out: nothing was there for it
        assert await app.result(run_id, timeout=10) is None


async def test_strict_without_waiter_raises_and_stores_nothing(app, database_url) -> None:
    waiter_app(app, timeout="7d")
    async with Environment(app, database=database_url) as env:
        with pytest.raises(tarry.SignalNotFound, match="no run waits on signal 'lost'"):
            await env.send_signal("lost", {"x": 1}, strict=True)
        run_id = await env.start("waiter", {"key": "lost"})
        waiting = await env.waiting(run_id)  # nothing was buffered: it parks
        assert waiting is not None and (waiting.kind, waiting.key) == ("signal", "lost")
        await env.advance("7d")
        assert await env.result(run_id) is None
        parked = await env.start("waiter", {"key": "found"}, run_id="strict-found")
        assert await env.waiting(parked) is not None
        assert await env.send_signal("found", 5, strict=True) == tarry.SignalResult(
            "delivered", "strict-found"
        )
        assert await env.result(parked) == 5


async def test_none_data_is_refused(app) -> None:
    with pytest.raises(ValueError, match="None"):
        await app.send_signal("k", None)
    with pytest.raises(ValueError, match="non-empty"):
        await app.send_signal("", {})


async def test_timeout_returns_none_and_is_stored(app, database_url) -> None:
    waiter_app(app, timeout="1h")
    async with Environment(app, database=database_url) as env:
        begin = env.now
        run_id = await env.start("waiter", {"key": "never"})
        await env.advance("59m59s")
        with pytest.raises(NotEnded, match="parked at step 'w' on signal 'never'"):
            await env.result(run_id)
        await env.advance("1s")
        assert await env.result(run_id) is None
        record = step(await env.get_run(run_id), "w")
        assert (record.status, record.output) == ("timed_out", None)
        assert record.ended_at == begin + timedelta(hours=1)
        # the late signal is buffered, not delivered to the finished run
        assert (await env.send_signal("never", 1)).status == "buffered"


async def test_conflict_fail_raises_signal_conflict_in_the_second_run(app) -> None:
    @app.workflow("holder")
    async def holder(ctx, step):
        return await step.wait_for_signal("w", signal="shared", timeout="1h")

    @app.workflow("intruder")
    async def intruder(ctx, step):
        try:
            await step.wait_for_signal("w", signal="shared", timeout="1h")
        except tarry.SignalConflict as exc:
            return f"conflict: {exc}"
        return "no conflict"

    async with app.worker():
        first = await app.start("holder")
        await wait_for_status(app, first, "waiting")
        second = await app.start("intruder")
        message = await app.result(second, timeout=10)
        assert message.startswith("conflict: ") and first in message
        assert (await app.send_signal("shared", "mine")).run_id == first
        assert await app.result(first, timeout=10) == "mine"


async def test_conflict_replace_times_out_the_old_wait_and_records_who(app) -> None:
    @app.workflow("holder")
    async def holder(ctx, step):
        return {"got": await step.wait_for_signal("w", signal="shared", timeout="1h")}

    @app.workflow("taker")
    async def taker(ctx, step):
        return await step.wait_for_signal("w", signal="shared", timeout="1h", on_conflict="replace")

    async with app.worker():
        old = await app.start("holder")
        await wait_for_status(app, old, "waiting")
        new = await app.start("taker")
        assert await app.result(old, timeout=10) == {"got": None}
        await wait_for_status(app, new, "waiting")
        assert (await app.send_signal("shared", "to-new")).run_id == new
        assert await app.result(new, timeout=10) == "to-new"
    record = step(await app.get_run(old), "w")
    assert record.status == "timed_out"
    assert record.error["replaced_by"] == new


async def test_step_send_signal_happens_once_even_on_replay(app, database_url) -> None:
    sent: list[tarry.SignalResult] = []

    @app.workflow("sender")
    async def sender(ctx, step):
        result = await step.send_signal("notify", "inbox", {"hello": 1})
        sent.append(result)
        await step.sleep("pause", "1h")  # forces a replay of the send
        await step.wait_for_signal("gate", signal="sender-gate", timeout=None)
        return {"status": result.status, "run_id": result.run_id}

    @app.workflow("inbox")
    async def inbox(ctx, step):
        first = await step.wait_for_signal("a", signal="inbox", timeout="1d")
        second = await step.wait_for_signal("b", signal="inbox", timeout="1d")
        return [first, second]

    # sticky=False: every resume replays the handler (a worker that parked the run
    # would otherwise resume it where it stopped, replaying nothing).
    async with Environment(app, database=database_url, sticky=False) as env:
        receiver = await env.start("inbox")
        assert await env.waiting(receiver) is not None
        run_id = await env.start("sender")
        waiting = await env.waiting(run_id)
        assert waiting is not None and (waiting.kind, waiting.step) == ("sleep", "pause")
        await env.advance("1h")
        waiting = await env.waiting(run_id)
        assert waiting is not None and (waiting.kind, waiting.step) == ("signal", "gate")
        await env.send_signal("sender-gate", {})
        assert await env.result(run_id) == {"status": "delivered", "run_id": receiver}
        waiting = await env.waiting(receiver)  # the replays sent nothing to its second wait
        assert waiting is not None and waiting.step == "b"
        await env.advance("1d")
        assert await env.result(receiver) == [{"hello": 1}, None]
    assert len(sent) == 3  # the handler replayed twice; the send happened once
    assert {s.run_id for s in sent} == {receiver}
