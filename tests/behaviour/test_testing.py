"""``tarry.testing.Environment``: virtual time that fires what falls due, in order.

The examples' own tests (examples/test_*.py) show the user's view; these pin
the rules: due times fire in order and at their own time, retries and leases
move with the clock, steps that take real time are waited for, doubles stand
in for steps, bad input is refused before anything moves, and runs that never
settle are reported instead of hanging.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

import tarry
from tarry.testing import DEFAULT_START, Environment, NeverIdle, NotEnded, WorkerCrash

from helpers import step

HOUR = 3600.0


def new_app(**options: object) -> tarry.App:
    # The database is never opened: the environment runs on a store of its own.
    return tarry.App("sqlite:///:memory:", **options)  # type: ignore[arg-type]


async def test_due_times_fire_in_order_each_at_its_own_time() -> None:
    app = new_app()

    @app.workflow("nap")
    async def nap(ctx, step):
        await step.sleep("first", ctx.payload["for"])
        await step.run("woke", lambda: None)
        await step.sleep("again", "1h")  # due inside the same advance
        return "done"

    async with Environment(app) as env:
        assert env.now == DEFAULT_START
        late = await env.start("nap", {"for": "2d"})
        early = await env.start("nap", {"for": "1d"})
        assert await env.advance("3d") == DEFAULT_START + timedelta(days=3)
        assert env.now == DEFAULT_START + timedelta(days=3)
        runs = {run_id: await env.get_run(run_id) for run_id in (early, late)}
    woke = {run_id: step(run, "woke").started_at for run_id, run in runs.items()}
    assert woke[early] == DEFAULT_START + timedelta(days=1)
    assert woke[late] == DEFAULT_START + timedelta(days=2)
    assert runs[early].ended_at == DEFAULT_START + timedelta(days=1, hours=1)
    assert runs[late].ended_at == DEFAULT_START + timedelta(days=2, hours=1)


async def test_an_advance_short_of_the_deadline_leaves_the_run_parked() -> None:
    app = new_app()

    @app.workflow("approval")
    async def approval(ctx, step):
        return await step.wait_for_signal("ask", signal="approve", timeout="7d")

    start = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
    async with Environment(app, start=start) as env:
        run_id = await env.start("approval")
        waiting = await env.waiting(run_id)
        assert waiting is not None
        assert (waiting.kind, waiting.key, waiting.step) == ("signal", "approve", "ask")
        assert waiting.expires_at == start + timedelta(days=7)
        await env.advance(timedelta(days=6, hours=23, minutes=59, seconds=59))
        with pytest.raises(NotEnded, match=r"parked at step 'ask' on signal 'approve' until"):
            await env.result(run_id)
        await env.advance("1s")
        assert await env.result(run_id) is None  # the timeout's answer
        assert await env.waiting(run_id) is None


async def test_retry_backoff_moves_with_the_clock() -> None:
    app = new_app(retry_base="1h")
    attempts: list[float] = []

    def flaky() -> str:
        attempts.append(time.time())
        if len(attempts) < 3:
            raise ConnectionError("the card processor is down")
        return "charged"

    @app.workflow("charge", retries=4)
    async def charge(ctx, step):
        return await step.run("charge", flaky)

    async with Environment(app) as env:
        run_id = await env.start("charge")
        await env.run_until_idle()
        assert len(attempts) == 1
        record = step(await env.get_run(run_id), "charge")
        assert (record.status, record.attempts) == ("retrying", 1)
        await env.advance("29m")  # the first backoff is between 30 min and 1 h
        assert len(attempts) == 1
        await env.advance("2h31m")  # the second is between 1 h and 2 h more
        assert await env.result(run_id) == "charged"
    assert len(attempts) == 3
    assert attempts[-1] - attempts[0] < 5  # no real time was waited for


async def test_a_crashed_workers_run_is_taken_over_when_its_lease_expires() -> None:
    app = new_app(lease="30s")

    @app.workflow("pay")
    async def pay(ctx, step):
        receipt = await step.run("charge", lambda: "real")
        await step.run("mail", lambda: "sent")
        return receipt

    async with Environment(app) as env:
        charge = env.mock_step("pay", "charge", side_effect=[WorkerCrash, "receipt-1"])
        run_id = await env.start("pay")
        with pytest.raises(NotEnded, match="held by a worker's lease"):
            await env.result(run_id)
        run = await env.get_run(run_id)
        assert run.status == "running" and run.steps == []  # the crash stored nothing
        await env.advance("29s")
        assert charge.call_count == 1
        await env.advance("1s")
        assert await env.result(run_id) == "receipt-1"
    assert charge.call_count == 2  # at-least-once: the step ran again after the crash


@pytest.mark.parametrize("entered", ["async", "sync"])
async def test_plain_def_handlers_run_on_virtual_time(entered: str) -> None:
    app = new_app()

    @app.workflow("drip")
    def drip(ctx, step):
        step.sleep("wait-a-day", "1d")
        reply = step.wait_for_signal("reply", signal=f"reply:{ctx.run_id}", timeout="3d")
        return step.run("decide", lambda: "nudged" if reply is None else "replied")

    if entered == "async":
        async with Environment(app) as env:
            run_id = await env.start("drip")
            await env.advance("1d")
            assert (await env.waiting(run_id)).kind == "signal"  # type: ignore[union-attr]
            await env.advance("3d")
            assert await env.result(run_id) == "nudged"
    else:

        def body() -> None:
            with Environment(app) as env:
                run_id = env.start_sync("drip")
                env.advance_sync("1d")
                env.send_signal_sync(f"reply:{run_id}", {"ok": True})
                assert env.result_sync(run_id) == "replied"

        await asyncio.to_thread(body)


async def test_a_step_that_takes_real_time_is_waited_for_not_cut_short() -> None:
    app = new_app()
    release = threading.Event()

    def slow() -> str:
        release.wait(5)
        return "finished"

    @app.workflow("slow")
    async def slow_flow(ctx, step):
        out = await step.run("slow", slow)
        await step.sleep("after", "1h")
        return out

    async with Environment(app) as env:
        run_id = await env.start("slow")
        advancing = asyncio.create_task(env.advance("2h"))
        await asyncio.sleep(0.05)
        assert not advancing.done()
        assert env.now == DEFAULT_START  # the clock waits for the step
        release.set()
        await advancing
        assert await env.result(run_id) == "finished"
        run = await env.get_run(run_id)
    assert step(run, "after").ended_at == DEFAULT_START + timedelta(hours=1)


async def test_step_doubles_answer_like_unittest_mock() -> None:
    app = new_app(retry_base="1s")
    real_calls: list[str] = []

    def real(name: str) -> str:
        real_calls.append(name)
        return f"real {name}"

    @app.workflow("three")
    async def three(ctx, step):
        a = await step.run("a", real, "a")
        b = await step.run("b", real, "b", loud=True)
        c = await step.run("c", real, "c")
        return [a, b, c]

    async def async_effect(name: str, loud: bool = False) -> str:
        return name.upper() if loud else name

    async with Environment(app) as env:
        b = env.mock_step("three", "b", side_effect=async_effect)
        c = env.mock_step("three", "c", side_effect=[TimeoutError("slow"), "second try"])
        run_id = await env.start("three")
        await env.advance("1m")
        assert await env.result(run_id) == ["real a", "B", "second try"]
    assert real_calls == ["a"]
    assert [call.kwargs for call in b.calls] == [{"loud": True}]
    assert c.call_count == 2


async def test_a_double_is_local_to_its_environment() -> None:
    app = new_app()

    @app.workflow("one")
    async def one(ctx, step):
        return await step.run("s", lambda: "real")

    async with Environment(app) as first, Environment(app) as second:
        first.mock_step("one", "s", return_value="mocked")
        a, b = await first.start("one"), await second.start("one")
        assert await first.result(a) == "mocked"
        assert await second.result(b) == "real"


async def test_bad_input_is_refused_and_moves_nothing() -> None:
    app = new_app()

    @app.workflow("w")
    async def w(ctx, step):
        return None

    async with Environment(app) as env:
        for bad in ("-1s", -5, "soon", "5M", "", float("nan"), None, True):
            with pytest.raises(ValueError, match="invalid duration"):
                await env.advance(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="never goes back"):
            await env.advance_to(DEFAULT_START - timedelta(seconds=1))
        with pytest.raises(ValueError, match="naive"):
            await env.advance_to(datetime(2031, 1, 1))
        assert env.now == DEFAULT_START
        with pytest.raises(tarry.WorkflowNotFound, match="no workflow 'nope'"):
            env.mock_step("nope", "s", return_value=1)
        with pytest.raises(ValueError, match="not both"):
            env.mock_step("w", "s", return_value=1, side_effect=[1])
        with pytest.raises(ValueError, match="step id"):
            env.mock_step("w", "", return_value=1)
        with pytest.raises(TypeError, match="side_effect"):
            env.mock_step("w", "s", side_effect=42)
        with pytest.raises(RuntimeError, match="await env"):
            env.advance_sync("1s")  # on the environment's own loop it would deadlock
    with pytest.raises(RuntimeError, match="not entered"):
        await env.advance("1s")
    with pytest.raises(TypeError, match="aware datetime"):
        Environment(app, start="2030-01-01")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="naive"):
        Environment(app, start=datetime(2030, 1, 1))


async def test_a_run_that_loops_without_parking_fails_at_max_steps() -> None:
    app = new_app()

    @app.workflow("spin")
    async def spin(ctx, step):
        i = 0
        while True:
            await step.run(f"s{i}", lambda: None)
            i += 1

    async with Environment(app, max_steps=50) as env:
        run_id = await env.start("spin")
        with pytest.raises(tarry.RunFailed, match="past its limit of 50 steps"):
            await env.result(run_id)


async def test_runs_that_never_settle_are_reported_not_hung() -> None:
    app = new_app()

    @app.workflow("forever")
    async def forever(ctx, step):
        return await step.invoke("child", "forever", {})  # each run starts another

    async with Environment(app, max_executions=40) as env:
        await env.start("forever")
        with pytest.raises(NeverIdle, match=r"max_executions=40.*the runs executed most"):
            await env.run_until_idle()


async def test_cancel_and_messages_through_the_environment() -> None:
    app = new_app()

    @app.workflow("inbox")
    async def inbox(ctx, step):
        note = await step.wait_for_message("note", timeout="1d")
        await step.sleep("cool-off", "1h")
        return note

    async with Environment(app) as env:
        run_id = await env.start("inbox")
        await env.send_message(run_id, "hello", {"n": 1})
        await env.run_until_idle()
        assert (await env.waiting(run_id)).kind == "sleep"  # type: ignore[union-attr]
        await env.cancel(run_id, "changed my mind")
        with pytest.raises(tarry.RunCancelled, match="changed my mind"):
            await env.result(run_id)
        other = await env.start("inbox")
        await env.advance("1d1h")
        assert await env.result(other) is None


async def test_the_same_test_runs_on_either_store(database_url: str) -> None:
    app = new_app()

    @app.workflow("approval")
    async def approval(ctx, step):
        return await step.wait_for_signal("ask", signal=f"ok:{ctx.run_id}", timeout="7d")

    async with Environment(app, database=database_url) as env:
        timed_out = await env.start("approval")
        answered = await env.start("approval")
        await env.advance("3d")
        await env.send_signal(f"ok:{answered}", {"yes": True})
        assert await env.result(answered) == {"yes": True}
        await env.advance("4d")
        assert await env.result(timed_out) is None
