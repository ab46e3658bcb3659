"""Events: triggers, wait_for_event with match / if_ / lookback, cancel_on, dedupe."""

from __future__ import annotations

import asyncio

import pytest

import tarry
from tarry.testing import Environment, NotEnded

from helpers import step, wait_for_status


async def test_onboarding_drip_one_user_resumes_the_other_is_nudged(app, database_url) -> None:
    sent: list[tuple[str, str]] = []

    @app.workflow("onboarding-drip", on="app/account.created")
    async def drip(ctx, step):
        email = ctx.event.data["email"]
        await step.run("welcome", lambda: sent.append(("welcome", email)))
        done = await step.wait_for_event(
            "wait-onboarding", event="app/onboarding.completed", match="data.userId",
            timeout="3d",
        )  # fmt: skip
        if done is None:
            await step.run("nudge", lambda: sent.append(("nudge", email)))
            return "nudged"
        return {"completed_by": done.data["userId"], "event": done.name}

    async with Environment(app, database=database_url) as env:
        first = await env.send_event("app/account.created", {"userId": "u1", "email": "a@x"})
        second = await env.send_event("app/account.created", {"userId": "u2", "email": "b@x"})
        (u1,), (u2,) = first.started, second.started
        for run_id in (u1, u2):
            waiting = await env.waiting(run_id)
            assert waiting is not None and waiting.kind == "event"
        done = await env.send_event("app/onboarding.completed", {"userId": "u1"})
        assert done.resumed == [u1] and done.started == []
        assert await env.result(u1) == {
            "completed_by": "u1",
            "event": "app/onboarding.completed",
        }
        await env.advance("2d23h59m")
        with pytest.raises(NotEnded, match="parked at step 'wait-onboarding'"):
            await env.result(u2)
        assert ("nudge", "b@x") not in sent
        await env.advance("1m")
        assert await env.result(u2) == "nudged"
        run = await env.get_run(u1)
    assert sorted(sent) == [("nudge", "b@x"), ("welcome", "a@x"), ("welcome", "b@x")]
    assert run.payload == {"userId": "u1", "email": "a@x"}
    assert step(run, "wait-onboarding").output["data"] == {"userId": "u1"}


async def test_ai_topic_flow_if_with_a_value_from_an_earlier_step(app) -> None:
    @app.workflow("ai-topic")
    async def ai_topic(ctx, step):
        completion = await step.run("request", lambda: f"c-{ctx.payload['topic']}")
        reply = await step.wait_for_event(
            "wait-reply", event="ai/completion.done", timeout="5s",
            if_=f'async.data.completionId == "{completion}" && async.data.score > 3',
        )  # fmt: skip
        return reply.data["text"]

    async with app.worker():
        run_id = await app.start("ai-topic", {"topic": "owls"})
        await wait_for_status(app, run_id, "waiting")
        miss = await app.send_event("ai/completion.done", {"completionId": "c-cats", "score": 9})
        low = await app.send_event("ai/completion.done", {"completionId": "c-owls", "score": 1})
        assert miss.resumed == [] and low.resumed == []
        hit = await app.send_event(
            "ai/completion.done", {"completionId": "c-owls", "score": 5, "text": "hoot"}
        )
        assert hit.resumed == [run_id]
        assert await app.result(run_id, timeout=10) == "hoot"


def gated_waiter(app: tarry.App, gate: asyncio.Event, **wait_options) -> None:
    @app.workflow("gated")
    async def gated(ctx, step):
        async def slow():
            await gate.wait()

        await step.run("earlier", slow)
        found = await step.wait_for_event(
            "wait", event="app/ping", match="data.key", timeout="1h", **wait_options
        )
        return None if found is None else found.data


async def test_default_lookback_catches_an_event_sent_during_an_earlier_step(app) -> None:
    gate = asyncio.Event()
    gated_waiter(app, gate)
    async with app.worker():
        run_id = await app.start("gated", {"key": "k"})
        await wait_for_status(app, run_id, "running")
        sent = await app.send_event("app/ping", {"key": "k", "n": 1})
        assert sent.resumed == []  # nobody waits yet
        gate.set()
        assert await app.result(run_id, timeout=10) == {"key": "k", "n": 1}


async def test_lookback_none_does_not_catch_it(app, database_url) -> None:
    gate = asyncio.Event()
    gated_waiter(app, gate, lookback=None)
    async with Environment(app, database=database_url) as env:
        run_id = await env.start("gated", {"key": "k"})
        await wait_for_status(env.app, run_id, "running")
        await env.send_event("app/ping", {"key": "k", "n": 1})
        gate.set()
        waiting = await env.waiting(run_id)  # the event before the wait is not seen
        assert waiting is not None and (waiting.kind, waiting.step) == ("event", "wait")
        await env.advance("1h")
        assert await env.result(run_id) is None


async def test_lookback_duration_reaches_before_the_run(app) -> None:
    @app.workflow("recent")
    async def recent(ctx, step):
        found = await step.wait_for_event("wait", event="app/price", timeout="300ms", lookback="1m")
        return found.data if found else None

    await app.send_event("app/price", {"p": 3})
    async with app.worker():
        assert await app.result(await app.start("recent"), timeout=10) == {"p": 3}


async def test_trigger_does_not_satisfy_its_own_wait_and_waits_take_distinct_events(
    app, database_url
) -> None:
    @app.workflow("echo", on="app/tick")
    async def echo(ctx, step):
        seen = []
        for _ in range(2):
            found = await step.wait_for_event("next", event="app/tick", timeout="1h")
            seen.append(found.data["n"] if found else None)
        return seen

    async with Environment(app, database=database_url) as env:
        (run_id,) = (await env.send_event("app/tick", {"n": 0})).started
        waiting = await env.waiting(run_id)
        assert waiting is not None and waiting.step == "next"
        second = await env.send_event("app/tick", {"n": 1})
        assert second.resumed == [run_id]
        assert len(second.started) == 1  # the same event also starts another echo run
        waiting = await env.waiting(run_id)  # its second wait takes neither event again
        assert waiting is not None and waiting.step == "next:1"
        await env.advance("1h")
        assert await env.result(run_id) == [1, None]


async def test_one_event_fans_out_to_every_matching_run(app) -> None:
    @app.workflow("listener")
    async def listener(ctx, step):
        found = await step.wait_for_event(
            "wait", event="app/broadcast", match="data.room", timeout="5s"
        )
        return found.id

    async with app.worker():
        runs = [await app.start("listener", {"room": room}) for room in ("a", "a", "b")]
        for run_id in runs:
            await wait_for_status(app, run_id, "waiting")
        sent = await app.send_event("app/broadcast", {"room": "a"})
        assert sorted(sent.resumed) == sorted(runs[:2])
        for run_id in runs[:2]:
            assert await app.result(run_id, timeout=10) == sent.event_ids[0]
        assert (await app.get_run(runs[2])).status == "waiting"


async def test_trigger_with_if_and_event_id_dedupe(app) -> None:
    @app.workflow("pro-only", on=tarry.trigger("app/signup", if_='event.data.plan == "pro"'))
    async def pro_only(ctx, step):
        return {"id": ctx.event.id, "name": ctx.event.name, "payload": ctx.payload}

    free = await app.send_event("app/signup", {"plan": "free"})
    assert free.started == []
    pro = await app.send_event("app/signup", {"plan": "pro"}, id="signup-1")
    again = await app.send_event("app/signup", {"plan": "pro"}, id="signup-1")
    assert len(pro.started) == 1 and again.started == [] and again.event_ids == ["signup-1"]
    async with app.worker():
        assert await app.result(pro.started[0], timeout=10) == {
            "id": "signup-1",
            "name": "app/signup",
            "payload": {"plan": "pro"},
        }


async def test_cancel_on_cancels_parked_at_once_and_running_at_next_step(app) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()
    ran: list[str] = []

    @app.workflow("order", cancel_on=[tarry.cancel_on("app/order.cancelled", match="data.orderId")])
    async def order(ctx, step):
        if ctx.payload.get("block"):

            async def block():
                entered.set()
                await release.wait()

            await step.run("block", block)
        await step.run("next", lambda: ran.append(ctx.payload["orderId"]))
        await step.wait_for_signal("w", signal=f"o-{ctx.payload['orderId']}", timeout=None)

    async with app.worker():
        parked = await app.start("order", {"orderId": 1})
        other = await app.start("order", {"orderId": 2})
        await wait_for_status(app, parked, "waiting")
        await wait_for_status(app, other, "waiting")
        await app.send_event("app/order.cancelled", {"orderId": 1})
        run = await app.get_run(parked)
        assert run.status == "cancelled" and run.waiting_for is None
        assert (await app.send_signal("o-1", {})).status == "buffered"
        assert (await app.get_run(other)).status == "waiting"

        busy = await app.start("order", {"orderId": 3, "block": True})
        await asyncio.wait_for(entered.wait(), 10)
        await app.send_event("app/order.cancelled", {"orderId": 3})
        release.set()
        with pytest.raises(tarry.RunCancelled):
            await app.result(busy, timeout=10)
    assert ran == [1, 2]


def test_invalid_cel_in_trigger_and_cancel_on_fails_at_decoration(app) -> None:
    with pytest.raises(tarry.ExpressionError, match="line 1, column 15"):
        app.workflow("bad-on", on=tarry.trigger("x", if_="event.data.n >"))
    with pytest.raises(tarry.ExpressionError):
        tarry.cancel_on("x", if_="async.data.n == == 1")
    with pytest.raises(tarry.ConfigError, match="not both"):
        tarry.cancel_on("x", match="data.a", if_="true")


async def test_invalid_cel_in_a_wait_fails_the_step_without_retry(app) -> None:
    @app.workflow("bad-wait", retries=3)
    async def bad_wait(ctx, step):
        await step.wait_for_event("w", event="x", timeout="1s", if_="async.data.n >")

    async with app.worker():
        run_id = await app.start("bad-wait")
        with pytest.raises(tarry.RunFailed) as info:
            await app.result(run_id, timeout=10)
    assert info.value.error["type"] == "ExpressionError"
    record = step(await app.get_run(run_id), "w")
    assert (record.status, record.attempts) == ("failed", 1)


async def test_step_send_event_happens_once_and_starts_triggered_runs(app, database_url) -> None:
    @app.workflow("emitter")
    async def emitter(ctx, step):
        ids = await step.send_event("emit", "app/emitted", {"from": ctx.run_id})
        await step.sleep("replay", "1h")
        return ids

    @app.workflow("child", on="app/emitted")
    async def child(ctx, step):
        return ctx.payload["from"]

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("emitter")
        waiting = await env.waiting(run_id)
        assert waiting is not None and (waiting.kind, waiting.step) == ("sleep", "replay")
        await env.advance("1h")
        ids = await env.result(run_id)
        assert len(ids) == 1
        children = (await env.list_runs(workflow="child")).items
        assert len(children) == 1
        assert await env.result(children[0].id) == run_id
