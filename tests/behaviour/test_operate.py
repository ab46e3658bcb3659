"""Operating runs for months, on both stores: failed attempts kept with their
tracebacks, retry in place, fork from a step, bulk operations, cascading
cancels and retention. Time is moved by the test environment's clock."""

from __future__ import annotations

import asyncio
import io
import threading
from collections import Counter

import orjson
import pytest

import tarry
from tarry.errors import RunStateError
from tarry.testing import Environment

from helpers import step


def new_app(**options: object) -> tarry.App:
    return tarry.App("sqlite:///:memory:", **options)  # type: ignore[arg-type]


def five_steps(app: tarry.App, calls: Counter[str], broken: set[str]) -> None:
    def work(name: str) -> str:
        calls[name] += 1
        if name in broken:
            raise ConnectionError(f"{name} is down")
        return name.upper()

    @app.workflow("five", retries=2)
    async def five(ctx, step):
        return [await step.run(name, work, name) for name in ("s1", "s2", "s3", "s4", "s5")]


async def test_each_failed_attempt_keeps_its_traceback(database_url: str) -> None:
    app = new_app(retry_base="1m")
    calls: Counter[str] = Counter()
    five_steps(app, calls, broken={"s3"})
    async with Environment(app, database=database_url) as env:
        run_id = await env.start("five")
        await env.advance("1h")
        with pytest.raises(tarry.RunFailed, match="s3 is down"):
            await env.result(run_id)
        run = await env.get_run(run_id)
    failed = step(run, "s3")
    assert failed.status == "failed" and failed.attempts == 3
    assert [a.attempt for a in failed.failed_attempts] == [1, 2, 3]
    for attempt in failed.failed_attempts:
        assert attempt.error["type"] == "ConnectionError"
        assert attempt.error["message"] == "s3 is down"
        trace = attempt.error["traceback"]
        assert trace.startswith("Traceback") and "in work" in trace
        assert trace.rstrip().endswith("ConnectionError: s3 is down")
        assert attempt.started_at is not None and attempt.ended_at is not None
    assert run.failed_attempts == failed.failed_attempts
    assert step(run, "s2").failed_attempts == []
    assert "Traceback" in run.error["traceback"] and run.error["step"] == "s3"


async def test_a_fixed_bug_is_retried_in_place_and_done_steps_run_once(
    database_url: str,
) -> None:
    app = new_app(retry_base="1m")
    calls: Counter[str] = Counter()
    broken = {"s3"}
    five_steps(app, calls, broken)
    async with Environment(app, database=database_url) as env:
        run_id = await env.start("five")
        await env.advance("1h")
        assert (await env.get_run(run_id)).status == "failed"
        broken.clear()  # the fix is deployed
        retried = await env.app.retry(run_id, by="alice")
        # Queued, or already claimed by the environment's worker.
        assert retried.status in ("queued", "running") and retried.error is None
        assert await env.result(run_id) == ["S1", "S2", "S3", "S4", "S5"]
        run = await env.get_run(run_id)
        with pytest.raises(RunStateError, match="is completed"):
            await env.app.retry(run_id)
    assert calls == {"s1": 1, "s2": 1, "s3": 4, "s4": 1, "s5": 1}
    assert [(c.action, c.detail["by"]) for c in run.changes] == [("retried", "alice")]
    assert step(run, "s3").attempts == 1  # a fresh retry budget
    assert len(step(run, "s3").failed_attempts) == 3  # the history stays


async def test_retry_refuses_runs_that_did_not_fail_or_were_not_cancelled(
    database_url: str,
) -> None:
    app = new_app()

    @app.workflow("park")
    async def park(ctx, step):
        return await step.wait_for_signal("w", signal=f"go:{ctx.run_id}", timeout=None)

    async with Environment(app, database=database_url) as env:
        with pytest.raises(tarry.RunNotFound):
            await env.app.retry("nope")
        queued = await env.start("park")
        # The environment's worker may have claimed it, or parked it, by now.
        with pytest.raises(RunStateError, match=r"is (queued|running|waiting).*not ended"):
            await env.app.retry(queued)
        await env.run_until_idle()
        with pytest.raises(RunStateError, match=r"is waiting.*cancel it first"):
            await env.app.retry(queued)
        await env.cancel(queued, "wrong input")
        assert (await env.app.retry(queued)).status in ("queued", "running")
        assert (await env.waiting(queued)) is not None  # parked again, its wait filed anew
        await env.send_signal(f"go:{queued}", {"ok": 1})
        assert await env.result(queued) == {"ok": 1}


async def test_fork_from_the_third_of_five_steps_reruns_three_to_five(database_url: str) -> None:
    app = new_app()
    calls: Counter[str] = Counter()
    five_steps(app, calls, broken=set())
    async with Environment(app, database=database_url) as env:
        original = await env.start("five", {"order": 1})
        await env.result(original)
        forked = await env.app.fork(original, "s3", by="bob")
        assert await env.result(forked) == ["S1", "S2", "S3", "S4", "S5"]
        run = await env.get_run(forked)
        with pytest.raises(ValueError, match=r"no step 's9'.*'s1', 's2', 's3', 's4', 's5'"):
            await env.app.fork(original, "s9")
        with pytest.raises(tarry.RunNotFound):
            await env.app.fork("nope", "s1")
    assert calls == {"s1": 1, "s2": 1, "s3": 2, "s4": 2, "s5": 2}
    assert run.forked_from == (original, "s3")
    assert run.payload == {"order": 1} and run.changes[0].detail["by"] == "bob"


async def test_fork_refuses_a_run_that_has_not_ended() -> None:
    app = new_app()

    @app.workflow("nap")
    async def nap(ctx, step):
        await step.sleep("s", "1d")

    async with Environment(app) as env:
        run_id = await env.start("nap")
        await env.run_until_idle()
        with pytest.raises(RunStateError, match="only an ended run can be forked"):
            await env.app.fork(run_id, "s")


async def test_bulk_retry_counts_first_and_retries_only_what_matches(database_url: str) -> None:
    app = new_app(retry_base="1m")
    calls: Counter[str] = Counter()
    broken = {"s2"}
    five_steps(app, calls, broken)

    @app.workflow("other")
    async def other(ctx, step):
        raise RuntimeError("always")

    async with Environment(app, database=database_url) as env:
        failing = [await env.start("five") for _ in range(3)]
        await env.start("other")
        await env.advance("1h")
        dry = await env.app.retry_runs(workflow="five", dry_run=True)
        assert (dry.matched, dry.done, dry.dry_run) == (3, [], True)
        assert [(await env.get_run(r)).status for r in failing] == ["failed"] * 3
        broken.clear()
        done = await env.app.retry_runs(workflow="five", since="1d", by="ops")
        assert sorted(done.done) == sorted(failing) and done.matched == 3
        await env.run_until_idle()
        assert [await env.result(r) for r in failing] == [["S1", "S2", "S3", "S4", "S5"]] * 3
        assert (await env.app.retry_runs(workflow="five")).matched == 0
        assert (await env.app.retry_runs(until="2h")).matched == 0  # created within 2 h
        with pytest.raises(ValueError, match="unknown run status"):
            await env.app.retry_runs(status="broken")
        with pytest.raises(ValueError, match="since: invalid duration"):
            await env.app.retry_runs(since="yesterday")


async def test_bulk_cancel_and_fork(database_url: str) -> None:
    app = new_app()

    @app.workflow("wait")
    async def wait(ctx, step):
        await step.run("before", lambda: 1)
        return await step.wait_for_signal("w", signal=f"w:{ctx.run_id}", timeout="1d")

    async with Environment(app, database=database_url) as env:
        runs = [await env.start("wait") for _ in range(4)]
        await env.run_until_idle()
        dry = await env.app.cancel_runs("maintenance", workflow="wait", dry_run=True)
        assert dry.matched == 4
        done = await env.app.cancel_runs("maintenance", workflow="wait")
        assert sorted(done.done) == sorted(runs)
        assert (await env.app.cancel_runs("again", workflow="wait")).matched == 0  # all ended
        forks = await env.app.fork_runs("w", workflow="wait", status="cancelled")
        assert len(forks.done) == 4 and not forks.skipped
        await env.advance("1d")
        assert [await env.result(r) for r in forks.done] == [None] * 4


async def test_cancelling_a_parent_cancels_its_parked_and_running_descendants(
    database_url: str,
) -> None:
    app = new_app()
    release = threading.Event()
    started = threading.Event()
    after_release: list[str] = []

    def block() -> str:
        started.set()
        release.wait(10)
        return "done"

    @app.workflow("parent")
    async def parent(ctx, step):
        return await step.invoke("child", "child")

    @app.workflow("child")
    async def child(ctx, step):
        await step.invoke("grandchild", "grandchild")  # parks the child

    @app.workflow("grandchild")
    async def grandchild(ctx, step):
        await step.run("busy", block)
        after_release.append(await step.run("next", lambda: "ran"))

    async with Environment(app, database=database_url) as env:
        parent_id = await env.start("parent")
        await asyncio.to_thread(started.wait, 10)  # the grandchild is executing
        runs = await env.list_runs()
        ids = {r.workflow: r.id for r in runs.items}
        assert (await env.get_run(ids["child"])).status == "waiting"
        cancelled = await env.cancel(parent_id, "customer left")
        assert cancelled.status == "cancelled"
        child_run = await env.get_run(ids["child"])
        assert child_run.status == "cancelled"
        assert "customer left" in child_run.error["message"]
        release.set()
        await env.run_until_idle()
        grand = await env.get_run(ids["grandchild"])
    assert grand.status == "cancelled" and after_release == []


async def test_cancel_with_children_false_leaves_them_running(database_url: str) -> None:
    app = new_app()

    @app.workflow("parent")
    async def parent(ctx, step):
        return await step.invoke("child", "child")

    @app.workflow("child")
    async def child(ctx, step):
        return await step.wait_for_signal("w", signal=f"c:{ctx.run_id}", timeout=None)

    async with Environment(app, database=database_url) as env:
        parent_id = await env.start("parent")
        await env.run_until_idle()
        child_id = next(r.id for r in (await env.list_runs(workflow="child")).items)
        await env.cancel(parent_id, children=False)
        assert (await env.get_run(child_id)).status == "waiting"


async def test_retention_deletes_ended_runs_but_never_a_parked_one(database_url: str) -> None:
    app = new_app(retention="1h")

    @app.workflow("quick")
    async def quick(ctx, step):
        return await step.run("s", lambda: "ok")

    @app.workflow("kept", retain="30d")
    async def kept(ctx, step):
        return "kept"

    @app.workflow("parked")
    async def parked(ctx, step):
        return await step.wait_for_signal("w", signal="never", timeout=None)

    async with Environment(app, database=database_url) as env:
        quick_ids = [await env.start("quick") for _ in range(3)]
        kept_id = await env.start("kept")
        parked_id = await env.start("parked")
        await env.send_message(parked_id, "note", {})
        await env.advance("50m")
        assert len((await env.list_runs(workflow="quick")).items) == 3
        await env.advance("20m")  # past the hour, and past the next purge
        for run_id in quick_ids:
            with pytest.raises(tarry.RunNotFound):
                await env.get_run(run_id)
        assert (await env.get_run(kept_id)).status == "completed"
        await env.advance("60d")
        with pytest.raises(tarry.RunNotFound):
            await env.get_run(kept_id)
        waiting = await env.get_run(parked_id)
    assert waiting.status == "waiting" and len(waiting.messages) == 1


async def test_purge_exports_then_deletes_and_a_dry_run_only_counts(database_url: str) -> None:
    app = new_app()

    @app.workflow("quick")
    async def quick(ctx, step):
        return await step.run("s", lambda: ctx.payload["n"])

    @app.workflow("parked")
    async def parked(ctx, step):
        await step.sleep("s", "365d")

    async with Environment(app, database=database_url) as env:
        ids = [await env.start("quick", {"n": n}) for n in range(3)]
        parked_id = await env.start("parked")
        await env.advance("2d")
        assert await env.app.purge("1d", dry_run=True) == 3
        assert await env.app.purge("3d") == 0  # none ended that long ago
        sink = io.BytesIO()
        assert await env.app.purge("1d", workflow="quick", export=sink) == 3
        exported = [orjson.loads(line) for line in sink.getvalue().splitlines()]
        assert sorted(r["id"] for r in exported) == sorted(ids)
        assert sorted(r["output"] for r in exported) == [0, 1, 2]
        assert all(r["steps"][0]["id"] == "s" for r in exported)
        assert (await env.get_run(parked_id)).status == "waiting"
        with pytest.raises(ValueError, match="older_than: invalid duration"):
            await env.app.purge("a month")


def test_retention_options_are_checked() -> None:
    with pytest.raises(tarry.ConfigError, match="retention must be positive"):
        new_app(retention="0s")
    with pytest.raises(tarry.ConfigError, match="retain: invalid duration"):
        new_app().workflow("w", retain="soon")
