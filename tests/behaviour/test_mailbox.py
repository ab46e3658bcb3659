"""The run mailbox, wait_for_any, invoke and per-workflow concurrency."""

from __future__ import annotations

import asyncio

import pytest

import tarry
from tarry.testing import Environment, NotEnded

from helpers import step, wait_for_status


async def test_messages_sent_before_the_wait_come_back_fifo_with_name_filter(app) -> None:
    gate = asyncio.Event()

    @app.workflow("inbox")
    async def inbox(ctx, step):
        await step.run("gate", gate.wait)
        approval = await step.wait_for_message("approval", name="approve", timeout="5s")
        rest = [await step.wait_for_message("any", timeout="5s") for _ in range(2)]
        return [approval.data] + [(m.name, m.data) for m in rest]

    async with app.worker():
        run_id = await app.start("inbox")
        await wait_for_status(app, run_id, "running")
        await app.send_message(run_id, "comment", {"n": 1})
        await app.send_message(run_id, "approve", {"by": "ann"})
        await app.send_message(run_id, "comment", {"n": 2})
        queued = (await app.get_run(run_id)).messages
        assert [(m.name, m.consumed_by) for m in queued] == [
            ("comment", None),
            ("approve", None),
            ("comment", None),
        ]
        gate.set()
        output = await app.result(run_id, timeout=10)
    assert output == [{"by": "ann"}, ["comment", {"n": 1}], ["comment", {"n": 2}]]
    history = (await app.get_run(run_id)).messages
    assert [m.consumed_by for m in history] == ["any", "approval", "any:1"]


async def test_message_to_a_parked_run_resumes_it(app) -> None:
    @app.workflow("waits")
    async def waits(ctx, step):
        message = await step.wait_for_message("m", timeout=None)
        return {"name": message.name, "data": message.data}

    async with app.worker():
        run_id = await app.start("waits")
        run = await wait_for_status(app, run_id, "waiting")
        assert (run.waiting_for.kind, run.waiting_for.key) == ("message", None)
        await app.send_message(run_id, "hello", [1, 2])
        assert await app.result(run_id, timeout=10) == {"name": "hello", "data": [1, 2]}


async def test_approve_loop_ignores_other_names(app) -> None:
    """The approve/reject loop: wait for any message, act only on the decisive names."""
    gate = asyncio.Event()

    @app.workflow("review")
    async def review(ctx, step):
        await step.run("gate", gate.wait)
        notes = []
        while True:
            message = await step.wait_for_message("decision", timeout="10s")
            if message is None:
                return "timed out"
            if message.name in ("approve", "reject"):
                return {"decision": message.name, "notes": notes}
            notes.append(message.data)

    async with app.worker():
        run_id = await app.start("review")
        await wait_for_status(app, run_id, "running")
        await app.send_message(run_id, "note", "looks fine")
        await app.send_message(run_id, "note", "typo on p2")
        await app.send_message(run_id, "approve", {})
        await app.send_message(run_id, "reject", {})  # stays queued: approve comes first
        gate.set()
        assert await app.result(run_id, timeout=10) == {
            "decision": "approve",
            "notes": ["looks fine", "typo on p2"],
        }
    run = await app.get_run(run_id)
    assert [s.id for s in run.steps] == ["gate", "decision", "decision:1", "decision:2"]
    assert [(m.name, m.consumed_by) for m in run.messages] == [
        ("note", "decision"),
        ("note", "decision:1"),
        ("approve", "decision:2"),
        ("reject", None),
    ]


async def test_send_message_errors(app) -> None:
    @app.workflow("quick")
    async def quick(ctx, step):
        return 1

    with pytest.raises(tarry.RunNotFound, match="'nope'"):
        await app.send_message("nope", "x", {})
    async with app.worker():
        run_id = await app.start("quick")
        await app.result(run_id, timeout=10)
    with pytest.raises(tarry.RunFinished, match=run_id):
        await app.send_message(run_id, "late", {})
    assert (await app.get_run(run_id)).messages == []


def any_waiter(app: tarry.App) -> None:
    @app.workflow("racer")
    async def racer(ctx, step):
        woken = await step.wait_for_any(
            "first",
            [
                tarry.signal(f"race-{ctx.payload['n']}"),
                tarry.event("app/race", match="data.n"),
                tarry.message("poke"),
            ],
            timeout="5s",
        )
        if isinstance(woken.value, tarry.Event):
            return [woken.index, woken.value.name, woken.value.data]
        if isinstance(woken.value, tarry.Message):
            return [woken.index, woken.value.name, woken.value.data]
        return [woken.index, woken.value]


async def test_wait_for_any_event_wins_and_the_signal_waiter_is_removed(app) -> None:
    any_waiter(app)
    async with app.worker():
        run_id = await app.start("racer", {"n": 1})
        run = await wait_for_status(app, run_id, "waiting")
        assert run.waiting_for.kind == "any"
        sent = await app.send_event("app/race", {"n": 1})
        assert sent.resumed == [run_id]
        assert await app.result(run_id, timeout=10) == [1, "app/race", {"n": 1}]
        assert (await app.send_signal("race-1", {"late": True})).status == "buffered"
        with pytest.raises(tarry.SignalNotFound):
            await app.send_signal("race-1", {}, strict=True)
    assert step(await app.get_run(run_id), "first").output["index"] == 1


async def test_wait_for_any_signal_wins_and_the_event_waiter_is_removed(app) -> None:
    any_waiter(app)
    async with app.worker():
        run_id = await app.start("racer", {"n": 2})
        await wait_for_status(app, run_id, "waiting")
        delivered = await app.send_signal("race-2", {"ok": 1})
        assert delivered == tarry.SignalResult("delivered", run_id)
        assert await app.result(run_id, timeout=10) == [0, {"ok": 1}]
        assert (await app.send_event("app/race", {"n": 2})).resumed == []


async def test_wait_for_any_message_and_buffered_wins_at_once(app) -> None:
    any_waiter(app)
    async with app.worker():
        await app.send_signal("race-3", "early")
        early = await app.start("racer", {"n": 3})
        assert await app.result(early, timeout=10) == [0, "early"]
        run_id = await app.start("racer", {"n": 4})
        await wait_for_status(app, run_id, "waiting")
        await app.send_message(run_id, "poke", {"p": 1})
        assert await app.result(run_id, timeout=10) == [2, "poke", {"p": 1}]


async def test_wait_for_any_times_out_with_none(app, database_url) -> None:
    @app.workflow("nothing")
    async def nothing(ctx, step):
        return await step.wait_for_any("w", [tarry.signal("never")], timeout="1d")

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("nothing")
        await env.advance("23h59m")
        with pytest.raises(NotEnded, match="parked at step 'w' on any"):
            await env.result(run_id)
        await env.advance("1m")
        assert await env.result(run_id) is None
        assert (await env.send_signal("never", 1)).status == "buffered"


def register_invoke(app: tarry.App, calls: list[str]) -> None:
    @app.workflow("parent")
    async def parent(ctx, step):
        total = await step.invoke("child", "child", {"x": 20})
        return total + 1

    @app.workflow("child")
    async def child(ctx, step):
        await step.run("count", lambda: calls.append(ctx.run_id))
        await step.wait_for_signal("hold", signal=f"hold-{ctx.run_id}", timeout=None)
        return ctx.payload["x"] * 2


async def test_invoke_across_a_worker_restart_starts_the_child_once(make_app) -> None:
    calls: list[str] = []
    first = make_app()
    register_invoke(first, calls)
    async with first.worker():
        parent_id = await first.start("parent")
        parent = await wait_for_status(first, parent_id, "waiting")
        assert parent.waiting_for.kind == "invoke"
        child_id = parent.waiting_for.key
        await wait_for_status(first, child_id, "waiting")
    await first.close()

    second = make_app()
    register_invoke(second, calls)
    async with second.worker():
        await second.send_signal(f"hold-{child_id}", {})
        assert await second.result(parent_id, timeout=10) == 41
    assert calls == [child_id]
    assert child_id == f"{parent_id}.child"
    assert len((await second.list_runs(workflow="child")).items) == 1


async def test_invoke_raises_step_failed_when_the_child_fails(app) -> None:
    @app.workflow("parent")
    async def parent(ctx, step):
        try:
            await step.invoke("kid", "broken")
        except tarry.StepFailed as exc:
            return exc.cause
        return "no error"

    @app.workflow("broken", retries=0)
    async def broken(ctx, step):
        await step.run("boom", lambda: 1 / 0)

    async with app.worker():
        message = await app.result(await app.start("parent"), timeout=10)
    assert "failed" in message and "division by zero" in message


async def test_concurrency_limit_holds_with_twenty_runs_started_at_once(app, database_url) -> None:
    running = 0
    peak = 0

    @app.workflow("limited", concurrency=3)
    async def limited(ctx, step):
        async def work():
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.03)
            running -= 1

        await step.run("work", work)
        await step.wait_for_signal("park", signal=f"limited-{ctx.run_id}", timeout="1h")
        await step.run("more", work)

    async with Environment(app, database=database_url, concurrency=20) as env:
        ids = await asyncio.gather(*(env.start("limited") for _ in range(20)))
        for run_id in ids:  # parked runs do not count against the limit
            waiting = await env.waiting(run_id)
            assert waiting is not None and waiting.step == "park"
        await env.advance("1h")
        for run_id in ids:
            assert await env.result(run_id) is None
    assert peak == 3
