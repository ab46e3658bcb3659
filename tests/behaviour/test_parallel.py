"""Concurrency inside a run, on both stores: branches that each run once and park
the run together, wait_for_all, k-of-n quorums, and nested steps refused."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest

import tarry
from tarry.testing import Environment

from helpers import step


def new_app(**options: object) -> tarry.App:
    return tarry.App("sqlite:///:memory:", **options)  # type: ignore[arg-type]


async def test_gathered_steps_each_run_once_across_five_resumes(database_url: str) -> None:
    app = new_app()
    calls: Counter[str] = Counter()

    def work(name: str) -> str:
        calls[name] += 1
        return name.upper()

    @app.workflow("fan")
    async def fan(ctx, step):
        first = await asyncio.gather(
            step.run("a", work, "a"),
            step.run("b", work, "b"),
            step.run("c", work, "c"),
            step.sleep("nap", "1h"),
        )
        for n in range(4):  # four more resumes, each replaying the gather
            await step.sleep(f"later-{n}", "1h")
        return first[:3]

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("fan")
        await env.run_until_idle()
        assert (await env.waiting(run_id)).kind == "sleep"  # type: ignore[union-attr]
        assert calls == {"a": 1, "b": 1, "c": 1}  # stored before the run parked
        await env.advance("5h")
        assert await env.result(run_id) == ["A", "B", "C"]
    assert calls == {"a": 1, "b": 1, "c": 1}


async def test_branches_park_on_the_union_and_each_wait_keeps_its_deadline(
    database_url: str,
) -> None:
    app = new_app()

    @app.workflow("both")
    async def both(ctx, step):
        contract, payment = await asyncio.gather(
            step.wait_for_signal("contract", signal=f"contract:{ctx.run_id}", timeout="7d"),
            step.wait_for_signal("payment", signal=f"payment:{ctx.run_id}", timeout="1d"),
        )
        return {"contract": contract, "payment": payment}

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("both")
        await env.run_until_idle()
        run = await env.get_run(run_id)
        assert run.status == "waiting"
        assert {s.id: s.status for s in run.steps} == {"contract": "waiting", "payment": "waiting"}
        await env.send_signal(f"contract:{run_id}", {"signed": True})
        await env.run_until_idle()
        run = await env.get_run(run_id)
        assert run.status == "waiting"  # the other branch parked it again
        assert step(run, "payment").status == "waiting"
        await env.advance("1d")  # the payment's own deadline; the contract's was 7 d
        assert await env.result(run_id) == {"contract": {"signed": True}, "payment": None}


async def test_two_branches_on_one_signal_key_conflict(database_url: str) -> None:
    app = new_app()

    @app.workflow("same-key")
    async def same_key(ctx, step):
        return await asyncio.gather(
            step.wait_for_signal("one", signal="shared", timeout="1h"),
            step.wait_for_signal("two", signal="shared", timeout="1h"),
        )

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("same-key")
        with pytest.raises(tarry.RunFailed, match="two waits of one run cannot share a key"):
            await env.result(run_id)


async def test_wait_for_all_returns_every_value_in_order(database_url: str) -> None:
    app = new_app()

    @app.workflow("all")
    async def wait_all(ctx, step):
        return await step.wait_for_all(
            "docs",
            [tarry.signal(f"contract:{ctx.run_id}"), tarry.message("payment")],
            timeout="7d",
        )

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("all")
        await env.run_until_idle()
        await env.send_message(run_id, "payment", {"paid": 10})
        await env.run_until_idle()
        run = await env.get_run(run_id)
        assert run.status == "waiting"
        [arrival] = step(run, "docs").output  # stored as it came
        assert arrival["index"] == 1 and arrival["value"]["data"] == {"paid": 10}
        assert run.waiting_for is not None and run.waiting_for.arrived == [1]
        assert run.waiting_for.needs == 2
        assert run.waiting_for.conditions == [f"signal contract:{run_id}", "message payment"]
        await env.send_signal(f"contract:{run_id}", {"signed": True})
        contract, payment = await env.result(run_id)
    assert contract == {"signed": True} and payment["data"] == {"paid": 10}


async def test_wait_for_all_times_out_with_what_arrived(database_url: str) -> None:
    app = new_app()

    @app.workflow("all")
    async def wait_all(ctx, step):
        values = await step.wait_for_all(
            "docs", [tarry.signal(f"a:{ctx.run_id}"), tarry.signal(f"b:{ctx.run_id}")],
            timeout="2d",
        )  # fmt: skip
        return values

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("all")
        await env.run_until_idle()
        await env.send_signal(f"b:{run_id}", {"b": 1})
        await env.advance("2d")
        assert await env.result(run_id) == [None, {"b": 1}]


async def test_two_of_three_reviewers(database_url: str) -> None:
    app = new_app()

    @app.workflow("review")
    async def review(ctx, step):
        votes = await step.wait_for_any(
            "votes",
            [tarry.signal(f"review:{ctx.run_id}:{who}") for who in ("ann", "bob", "cy")],
            timeout="3d",
            count=2,
        )
        return [(v.index, v.value) for v in votes]

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("review")
        await env.run_until_idle()
        await env.send_signal(f"review:{run_id}:cy", {"ok": True})
        await env.run_until_idle()
        waiting = (await env.get_run(run_id)).waiting_for
        assert waiting is not None and (waiting.arrived, waiting.needs) == ([2], 2)
        await env.send_signal(f"review:{run_id}:ann", {"ok": False})
        assert await env.result(run_id) == [[2, {"ok": True}], [0, {"ok": False}]]
        # The third reviewer's wait went with the second vote: no run waits on it,
        # so the signal is buffered (or refused with strict=True), never delivered.
        late = await env.send_signal(f"review:{run_id}:bob", {"ok": True})
        assert late.status == "buffered" and late.run_id is None
        with pytest.raises(tarry.SignalNotFound):
            await env.send_signal(f"review:{run_id}:bob", {"ok": True}, strict=True)


async def test_quorum_bad_input_is_refused() -> None:
    app = new_app()
    seen: list[str] = []

    @app.workflow("bad")
    async def bad(ctx, step):
        for count, conditions in ((0, [tarry.signal("x")]), (3, [tarry.signal("x")] * 2)):
            try:
                await step.wait_for_any(f"w{count}", conditions, timeout="1h", count=count)
            except ValueError as exc:
                seen.append(str(exc))
        try:
            await step.wait_for_all("empty", [], timeout="1h")
        except ValueError as exc:
            seen.append(str(exc))
        try:
            await step.wait_for_all("odd", ["signal-x"], timeout="1h")  # type: ignore[list-item]
        except TypeError as exc:
            seen.append(str(exc))
        return "done"

    async with Environment(app) as env:
        assert await env.result(await env.start("bad")) == "done"
    assert "count must be from 1 to 1" in seen[0] and "count must be from 1 to 2" in seen[1]
    assert "at least one condition" in seen[2] and "'signal-x'" in seen[3]


async def test_a_step_called_inside_a_step_is_refused(database_url: str) -> None:
    app = new_app()

    @app.workflow("nested")
    async def nested(ctx, step):
        async def outer() -> str:
            return await step.run("inner", lambda: "x")

        return await step.run("outer", outer)

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("nested")
        with pytest.raises(tarry.RunFailed) as failed:
            await env.result(run_id)
    message = failed.value.error["message"]
    assert "'inner'" in message and "'outer'" in message and "cannot nest" in message


async def test_plain_def_handlers_run_branches_with_step_parallel(database_url: str) -> None:
    app = new_app()
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def work(name: str) -> str:
        with lock:
            calls[name] += 1
        return name

    @app.workflow("sync-fan")
    def sync_fan(ctx, step):
        return step.parallel(
            lambda: step.run("a", work, "a"),
            lambda: step.wait_for_signal("sig", signal=f"s:{ctx.run_id}", timeout="1h"),
            lambda: step.run("b", work, "b"),
        )

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("sync-fan")
        await env.run_until_idle()
        assert (await env.get_run(run_id)).status == "waiting"
        await env.send_signal(f"s:{run_id}", {"go": 1})
        assert await env.result(run_id) == ["a", {"go": 1}, "b"]
    assert calls == {"a": 1, "b": 1}


async def test_a_retry_beside_a_parked_sibling_keeps_its_backoff(database_url: str) -> None:
    app = new_app(retry_base="1h")
    calls: Counter[str] = Counter()

    def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] < 2:
            raise ConnectionError("down")
        return "ok"

    @app.workflow("mixed")
    async def mixed(ctx, step):
        return await asyncio.gather(
            step.run("flaky", flaky),
            step.wait_for_signal("sig", signal=f"m:{ctx.run_id}", timeout="7d"),
        )

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("mixed")
        await env.run_until_idle()
        assert calls["flaky"] == 1
        await env.send_signal(f"m:{run_id}", {"s": 1})  # resumes before the backoff ends
        await env.run_until_idle()
        assert calls["flaky"] == 1 and (await env.get_run(run_id)).status == "waiting"
        await env.advance("1h")
        assert await env.result(run_id) == ["ok", {"s": 1}]
    assert calls["flaky"] == 2


async def test_task_group_branches_and_an_error_beside_a_parked_sibling(
    database_url: str,
) -> None:
    app = new_app()
    calls: Counter[str] = Counter()

    def boom() -> str:
        calls["boom"] += 1
        raise tarry.NonRetriableError("the card was declined")

    @app.workflow("group")
    async def group(ctx, step):
        async with asyncio.TaskGroup() as tg:
            ok = tg.create_task(step.run("ok", lambda: "fine"))
            tg.create_task(step.wait_for_signal("sig", signal=f"g:{ctx.run_id}", timeout="1d"))
            if ctx.payload.get("fail"):
                tg.create_task(step.run("boom", boom))
        return ok.result()

    async with Environment(app, database=database_url) as env:
        good = await env.start("group", {})
        bad = await env.start("group", {"fail": True})
        await env.run_until_idle()
        assert (await env.get_run(good)).status == "waiting"
        await env.send_signal(f"g:{good}", {"go": 1})
        assert await env.result(good) == "fine"
        # The failing branch fails the run at once: it is not left parked on its sibling.
        with pytest.raises(tarry.RunFailed, match="card was declined"):
            await env.result(bad)
        assert step(await env.get_run(bad), "ok").status == "completed"
    assert calls["boom"] == 1
