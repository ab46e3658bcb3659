"""Steps: memoization, replay, retries, output limits, bail, sync handlers."""

from __future__ import annotations

from datetime import datetime, timedelta

import pydantic
import pytest

import tarry
from tarry.testing import DEFAULT_START, Environment, NotEnded

from helpers import step, wait_for_status


async def test_parked_run_resumes_in_a_new_app_without_rerunning_completed_steps(make_app) -> None:
    calls: list[str] = []

    def register(app: tarry.App) -> None:
        @app.workflow("approve")
        async def approve(ctx, step):
            a = await step.run("a", lambda: calls.append("a") or 1)
            b = await step.run("b", lambda: calls.append("b") or 2)
            decision = await step.wait_for_signal("wait", signal="k1", timeout="1h")
            c = await step.run("c", lambda: calls.append("c") or 3)
            return [a, b, decision, c]

    first = make_app()
    register(first)
    async with first.worker():
        run_id = await first.start("approve")
        run = await wait_for_status(first, run_id, "waiting")
    assert run.waiting_for is not None
    assert (run.waiting_for.kind, run.waiting_for.key, run.waiting_for.step) == (
        "signal",
        "k1",
        "wait",
    )
    await first.close()

    second = make_app()
    register(second)
    async with second.worker():
        result = await second.send_signal("k1", {"ok": 1})
        assert result == tarry.SignalResult("delivered", run_id)
        assert await second.result(run_id, timeout=10) == [1, 2, {"ok": 1}, 3]
    assert calls == ["a", "b", "c"]


async def test_repeated_step_ids_are_keyed_with_a_counter(app) -> None:
    @app.workflow("loop")
    async def loop(ctx, step):
        total = 0
        for i in range(3):
            total += await step.run("add", lambda i=i: i)
        return total

    async with app.worker():
        run_id = await app.start("loop")
        assert await app.result(run_id, timeout=10) == 3
    run = await app.get_run(run_id)
    assert [s.id for s in run.steps] == ["add", "add:1", "add:2"]
    assert [s.output for s in run.steps] == [0, 1, 2]


async def test_retries_with_attempt_numbers_then_success(make_app, database_url) -> None:
    app = make_app(retry_base="1m", retry_cap="1h")
    attempts: list[int] = []
    tried_at: list[float] = []

    @app.workflow("flaky", retries=2)
    async def flaky(ctx, step):
        def work():
            attempts.append(ctx.attempt)
            tried_at.append(env.clock.now())
            if len(attempts) < 3:
                raise RuntimeError(f"boom {len(attempts)}")
            return "ok"

        return await step.run("work", work)

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("flaky")
        await env.run_until_idle()
        assert attempts == [1]  # the retry waits for its backoff
        await env.advance("1h")
        assert await env.result(run_id) == "ok"
        run = await env.get_run(run_id)
    assert attempts == [1, 2, 3]
    # backoffs: up to retry_base, then up to twice it, each at least half its ceiling
    first, second = tried_at[1] - tried_at[0], tried_at[2] - tried_at[1]
    assert 30 <= first <= 60 and 60 <= second <= 120, tried_at
    record = step(run, "work")
    assert (record.status, record.attempts) == ("completed", 3)


async def test_exhausted_retries_raise_step_failed_into_the_handler(make_app, database_url) -> None:
    app = make_app(retry_base="1m", retry_cap="1h")
    runs: list[int] = []

    @app.workflow("doomed", retries=1)
    async def doomed(ctx, step):
        def work():
            runs.append(1)
            raise ValueError("always")

        try:
            await step.run("work", work)
        except tarry.StepFailed as exc:
            return {"step": exc.step_id, "cause": exc.cause}
        return "unreachable"

    @app.workflow("uncaught", retries=0)
    async def uncaught(ctx, step):
        await step.run("explode", lambda: 1 / 0)

    async with Environment(app, database=database_url) as env:
        caught = await env.start("doomed")
        failed = await env.start("uncaught")
        with pytest.raises(tarry.RunFailed) as info:
            await env.result(failed)  # no retry left: no time passes before it fails
        assert len(runs) == 1
        with pytest.raises(NotEnded):
            await env.result(caught)  # its one retry waits for the backoff
        await env.advance("1m")
        assert await env.result(caught) == {"step": "work", "cause": "always"}
    assert len(runs) == 2
    assert info.value.error["type"] == "StepFailed"
    assert info.value.error["step"] == "explode"
    assert "division by zero" in info.value.error["message"]


async def test_non_retriable_error_fails_at_once_and_retry_after_waits(app, database_url) -> None:
    seen: list[str] = []

    @app.workflow("nr", retries=5)
    async def nr(ctx, step):
        def fatal():
            seen.append("fatal")
            raise tarry.NonRetriableError("card declined")

        await step.run("fatal", fatal)

    @app.workflow("later", retries=1)
    async def later(ctx, step):
        def once():
            seen.append(f"later{ctx.attempt}")
            if ctx.attempt == 1:
                raise tarry.RetryAfter("1h")
            return ctx.attempt

        return await step.run("once", once)

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("nr")
        with pytest.raises(tarry.RunFailed, match="card declined"):
            await env.result(run_id)  # at once: the clock has not moved
        later_id = await env.start("later")
        await env.advance("59m59s")
        with pytest.raises(NotEnded):
            await env.result(later_id)
        assert seen == ["fatal", "later1"]
        await env.advance("1s")
        assert await env.result(later_id) == 2
    assert seen == ["fatal", "later1", "later2"]


async def test_bad_outputs_fail_the_step_without_retry_naming_it(make_app) -> None:
    app = make_app(max_output_bytes=1000)
    calls: list[str] = []

    @app.workflow("bad-type", retries=3)
    async def bad_type(ctx, step):
        await step.run("make-object", lambda: calls.append("t") or object())

    @app.workflow("too-big", retries=3)
    async def too_big(ctx, step):
        await step.run("make-big", lambda: calls.append("b") or "x" * 5000)

    async with app.worker():
        with pytest.raises(tarry.RunFailed) as typed:
            await app.result(await app.start("bad-type"), timeout=10)
        with pytest.raises(tarry.RunFailed) as sized:
            await app.result(await app.start("too-big"), timeout=10)
    assert calls == ["t", "b"]
    assert "make-object" in str(typed.value) and "object" in str(typed.value)
    assert "make-big" in str(sized.value) and "5,002 bytes" in str(sized.value)


async def test_pydantic_outputs_are_dumped_and_replay_sees_json(app) -> None:
    class Order(pydantic.BaseModel):
        id: int
        when: datetime

    @app.workflow("model")
    async def model(ctx, step):
        order = await step.run("load", lambda: Order(id=7, when=datetime(2026, 1, 2)))
        return order

    async with app.worker():
        output = await app.result(await app.start("model"), timeout=10)
    assert output == {"id": 7, "when": "2026-01-02T00:00:00"}


async def test_changed_step_kind_fails_the_run_with_non_determinism(make_app) -> None:
    first = make_app()

    @first.workflow("evolving")
    async def v1(ctx, step):
        await step.wait_for_signal("gate", signal="gate-key", timeout=None)
        return "v1"

    async with first.worker():
        run_id = await first.start("evolving")
        await wait_for_status(first, run_id, "waiting")
    await first.close()

    second = make_app()

    @second.workflow("evolving")
    async def v2(ctx, step):
        await step.run("gate", lambda: 1)
        return "v2"

    async with second.worker():
        await second.send_signal("gate-key", {})
        with pytest.raises(tarry.RunFailed) as info:
            await second.result(run_id, timeout=10)
    assert info.value.error["type"] == "NonDeterminismError"
    assert "'gate'" in info.value.error["message"]


async def test_bail_cancels_with_the_reason(app) -> None:
    after: list[int] = []

    @app.workflow("bails")
    async def bails(ctx, step):
        try:
            step.bail("not today")
        except Exception:  # user code must not swallow the bail
            after.append(1)
        after.append(2)

    async with app.worker():
        run_id = await app.start("bails")
        with pytest.raises(tarry.RunCancelled) as info:
            await app.result(run_id, timeout=10)
    assert info.value.reason == "not today"
    assert after == []
    assert (await app.get_run(run_id)).status == "cancelled"


async def test_except_exception_does_not_swallow_the_pause(app) -> None:
    @app.workflow("greedy")
    async def greedy(ctx, step):
        try:
            value = await step.wait_for_signal("w", signal="greedy-key", timeout=None)
        except Exception:
            return "swallowed"
        return value

    async with app.worker():
        run_id = await app.start("greedy")
        await wait_for_status(app, run_id, "waiting")
        await app.send_signal("greedy-key", "go")
        assert await app.result(run_id, timeout=10) == "go"


async def test_plain_def_handler_runs_in_a_thread_with_blocking_steps(app, database_url) -> None:
    @app.workflow("sync")
    def sync_flow(ctx, step):
        a = step.run("a", lambda: 20)
        step.sleep("nap", "1h")
        got = step.wait_for_signal("w", signal=f"sync-{ctx.run_id}", timeout="1d")
        return a + got["n"]

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("sync")
        waiting = await env.waiting(run_id)
        assert waiting is not None and (waiting.kind, waiting.step) == ("sleep", "nap")
        await env.advance("1h")
        waiting = await env.waiting(run_id)
        assert waiting is not None and (waiting.kind, waiting.step) == ("signal", "w")
        await env.send_signal(f"sync-{run_id}", {"n": 22})
        assert await env.result(run_id) == 42


async def test_sleep_and_sleep_until_park_and_wake_on_time(app, database_url) -> None:
    start = DEFAULT_START
    wake_at = (start + timedelta(days=1)).astimezone()  # any aware time, here the local zone

    @app.workflow("sleeper")
    async def sleeper(ctx, step):
        await step.sleep("short", "1h")
        await step.sleep_until("until", wake_at)
        return "awake"

    async with Environment(app, database=database_url, start=start) as env:
        run_id = await env.start("sleeper")
        waiting = await env.waiting(run_id)
        assert waiting is not None and (waiting.kind, waiting.step) == ("sleep", "short")
        assert waiting.expires_at == start + timedelta(hours=1)
        await env.advance("59m59s")
        assert (await env.waiting(run_id)) == waiting  # not a second early
        await env.advance("1s")
        waiting = await env.waiting(run_id)
        assert waiting is not None and (waiting.kind, waiting.step) == ("sleep", "until")
        assert waiting.expires_at == wake_at
        await env.advance_to(wake_at - timedelta(seconds=1))
        with pytest.raises(NotEnded):
            await env.result(run_id)
        await env.advance("1s")
        assert await env.result(run_id) == "awake"
        run = await env.get_run(run_id)
    assert [(s.id, s.kind, s.status) for s in run.steps] == [
        ("short", "sleep", "completed"),
        ("until", "sleep", "completed"),
    ]
    assert [s.ended_at for s in run.steps] == [start + timedelta(hours=1), wake_at]


async def test_bad_step_input_fails_the_run_with_the_offending_value(app) -> None:
    @app.workflow("naive")
    async def naive(ctx, step):
        await step.sleep_until("when", datetime(2030, 1, 1))

    @app.workflow("empty-id")
    async def empty_id(ctx, step):
        await step.run("", lambda: 1)

    @app.workflow("bad-duration")
    async def bad_duration(ctx, step):
        await step.sleep("nap", "5 minutes")

    async with app.worker():
        for workflow, fragment in [
            ("naive", "2030-01-01T00:00:00"),
            ("empty-id", "''"),
            ("bad-duration", "'5 minutes'"),
        ]:
            with pytest.raises(tarry.RunFailed) as info:
                await app.result(await app.start(workflow), timeout=10)
            assert fragment in info.value.error["message"], info.value.error


async def test_a_run_past_its_step_limit_fails_saying_so(make_app) -> None:
    app = make_app(max_steps=5)

    @app.workflow("endless")
    async def endless(ctx, step):
        n = 0
        while True:
            try:
                n = await step.run("tick", lambda n=n: n + 1)
            except Exception:  # the limit cannot be swallowed
                return "swallowed"

    async with app.worker():
        run_id = await app.start("endless")
        with pytest.raises(tarry.RunFailed) as info:
            await app.result(run_id, timeout=10)
    assert info.value.error["type"] == "StepLimitExceeded"
    assert "'tick:5'" in info.value.error["message"] and "limit of 5" in info.value.error["message"]
    assert len((await app.get_run(run_id)).steps) == 5
