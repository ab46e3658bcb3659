"""Client methods on App: start, get_run, list_runs, result, cancel, sync twins."""

from __future__ import annotations

import asyncio
import threading

import pytest

import tarry

from helpers import step, wait_for_status


def register(app: tarry.App) -> None:
    @app.workflow("park")
    async def park(ctx, step):
        await step.run("before", lambda: "done")
        return await step.wait_for_signal("w", signal=ctx.payload["key"], timeout=None)

    @app.workflow("quick")
    async def quick(ctx, step):
        return ctx.payload


async def test_start_is_idempotent_on_run_id(app) -> None:
    register(app)
    first = await app.start("quick", {"n": 1}, run_id="order-7")
    again = await app.start("quick", {"n": 2}, run_id="order-7")
    assert first == again == "order-7"
    async with app.worker():
        assert await app.result("order-7", timeout=10) == {"n": 1}
    assert len((await app.list_runs()).items) == 1


async def test_unknown_workflow_and_run(app) -> None:
    register(app)
    with pytest.raises(tarry.WorkflowNotFound, match="'nope'"):
        await app.start("nope")
    with pytest.raises(tarry.RunNotFound, match="'missing'"):
        await app.get_run("missing")
    with pytest.raises(tarry.RunNotFound):
        await app.cancel("missing")


async def test_list_runs_pages_and_filters(app) -> None:
    register(app)
    ids = [await app.start("quick", {"i": i}) for i in range(5)]
    parked = await app.start("park", {"key": "list-k"})
    async with app.worker():
        for run_id in ids:
            await app.result(run_id, timeout=10)
        await wait_for_status(app, parked, "waiting")
    page = await app.list_runs(limit=2)
    seen = [run.id for run in page.items]
    while page.next_cursor:
        page = await app.list_runs(limit=2, cursor=page.next_cursor)
        seen += [run.id for run in page.items]
    assert seen == [parked, *reversed(ids)]
    completed = await app.list_runs(status="completed", workflow="quick")
    assert [r.id for r in completed.items] == list(reversed(ids))
    assert completed.next_cursor is None
    assert [r.id for r in (await app.list_runs(status="waiting")).items] == [parked]
    with pytest.raises(ValueError, match="'sleeping'"):
        await app.list_runs(status="sleeping")
    with pytest.raises(ValueError, match="cursor"):
        await app.list_runs(cursor="abc")


async def test_run_record_has_timeline(app) -> None:
    register(app)
    async with app.worker():
        run_id = await app.start("park", {"key": "timeline"})
        run = await wait_for_status(app, run_id, "waiting")
    assert run.workflow == "park" and run.payload == {"key": "timeline"}
    assert run.created_at <= run.updated_at and run.ended_at is None
    before = step(run, "before")
    assert (before.kind, before.status, before.output, before.attempts) == (
        "run",
        "completed",
        "done",
        1,
    )
    assert before.started_at <= before.ended_at
    wait = step(run, "w")
    assert (wait.kind, wait.status) == ("signal", "waiting")
    assert run.waiting_for == tarry.WaitingFor("signal", "w", "timeline", None)


async def test_result_times_out(app) -> None:
    register(app)
    run_id = await app.start("park", {"key": "never"})
    with pytest.raises(TimeoutError, match=run_id):
        await app.result(run_id, timeout="100ms")


async def test_result_registers_once_and_leaves_nothing_behind(app, monkeypatch) -> None:
    register(app)
    never = await app.start("park", {"key": "never"})
    with pytest.raises(TimeoutError):
        await app.result(never, timeout="200ms")
    assert app._local.watching(never) == 0

    polls = 0
    read = app._run_record  # what result() polls: the run's own record

    async def counting(run_id: str) -> tarry.Run:
        nonlocal polls
        polls += 1
        return await read(run_id)

    monkeypatch.setattr(app, "_run_record", counting)
    run_id = await app.start("quick", {"n": 1})
    waiting = asyncio.create_task(app.result(run_id))
    while polls < 5:  # several polls of a run that has not started
        await asyncio.sleep(0.01)
    assert app._local.watching(run_id) == 1
    async with app.worker():
        assert await asyncio.wait_for(waiting, 10) == {"n": 1}
    assert app._local.watching(run_id) == 0


async def test_cancel_parked_run_removes_its_waiter(app) -> None:
    register(app)
    async with app.worker():
        run_id = await app.start("park", {"key": "cancel-me"})
        await wait_for_status(app, run_id, "waiting")
        run = await app.cancel(run_id, "customer changed mind")
        assert run.status == "cancelled" and run.waiting_for is None
        assert step(run, "w").status == "cancelled"
        assert (await app.send_signal("cancel-me", 1)).status == "buffered"
        with pytest.raises(tarry.RunCancelled, match="customer changed mind"):
            await app.result(run_id, timeout=10)
        again = await app.cancel(run_id, "twice")  # no-op on an ended run
        assert again.error["message"] == "customer changed mind"


async def test_cancel_queued_run_and_running_run_at_next_step(app) -> None:
    register(app)
    entered = asyncio.Event()
    release = asyncio.Event()
    after: list[str] = []

    @app.workflow("slow")
    async def slow(ctx, step):
        async def block():
            entered.set()
            await release.wait()
            return "first"

        await step.run("first", block)
        after.append("second")
        await step.run("second", lambda: after.append("ran second"))

    queued = await app.start("quick", {})
    assert (await app.cancel(queued)).status == "cancelled"
    async with app.worker():
        run_id = await app.start("slow")
        await asyncio.wait_for(entered.wait(), 10)
        assert (await app.cancel(run_id, "stop")).status == "running"
        release.set()
        with pytest.raises(tarry.RunCancelled, match="stop"):
            await app.result(run_id, timeout=10)
    assert "ran second" not in after
    assert [s.id for s in (await app.get_run(run_id)).steps] == ["first"]


async def test_sync_twins_work_from_threads_while_a_worker_runs(app) -> None:
    register(app)
    results: dict[str, object] = {}

    def client() -> None:
        run_id = app.start_sync("park", {"key": "from-thread"})
        while app.get_run_sync(run_id).status != "waiting":
            pass
        results["signal"] = app.send_signal_sync("from-thread", {"ok": True})
        results["output"] = app.result_sync(run_id, timeout=10)
        results["listed"] = [r.id for r in app.list_runs_sync().items]
        results["run_id"] = run_id

    async with app.worker():
        thread = threading.Thread(target=client)
        thread.start()
        await asyncio.to_thread(thread.join, 20)
    assert results["output"] == {"ok": True}
    assert results["signal"] == tarry.SignalResult("delivered", results["run_id"])
    assert results["listed"] == [results["run_id"]]


def test_sync_twins_without_any_event_loop(app) -> None:
    register(app)
    run_id = app.start_sync("quick", {"plain": True})
    assert app.get_run_sync(run_id).status == "queued"
    assert app.cancel_sync(run_id).status == "cancelled"


async def test_async_with_opens_binds_and_closes(database_url) -> None:
    async with tarry.App(database_url, lease="2s") as app:
        register(app)
        async with app.worker():
            run_id = await app.start("quick", {"n": 1})
            assert await app.result(run_id, timeout=10) == {"n": 1}
    again = tarry.App(database_url)
    assert (await again.get_run(run_id)).status == "completed"
    await again.close()
