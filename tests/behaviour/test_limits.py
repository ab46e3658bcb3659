"""Inputs that once wedged a run or lied about the cause: each refused with a clear
error before anything is stored, the same on both stores, or carried through."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import tarry
from tarry.names import MAX_NAME, child_run_id

from helpers import wait_for_status

TOO_LONG = "k" * (MAX_NAME + 1)


async def nothing_stored(app: tarry.App) -> None:
    assert (await app.list_runs()).items == []
    assert (await app.list_events()).items == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda app: app.start("w", run_id=TOO_LONG), "run_id is 257 characters long"),
        (lambda app: app.start("w", run_id="a\x00b"), "run_id must not contain a NUL"),
        (lambda app: app.send_signal(TOO_LONG, {}), "signal key is 257 characters long"),
        (lambda app: app.send_signal("a\x00", {}), "signal key must not contain a NUL"),
        (lambda app: app.send_signal("\ud800", {}), "signal key is not valid Unicode"),
        (lambda app: app.send_event("e" * 1_000_000), "event name is 1,000,000 characters"),
        (lambda app: app.send_event("app/x", id=TOO_LONG), "event id is 257 characters"),
        (lambda app: app.send_message("r", TOO_LONG), "message name is 257 characters"),
    ],
)
async def test_a_name_the_store_cannot_index_is_refused_before_anything_is_stored(
    make_app: Callable[..., tarry.App], call: Any, message: str
) -> None:
    app = make_app()

    @app.workflow("w")
    async def w(ctx: tarry.Context, step: tarry.Step) -> None:
        return None

    started = time.monotonic()
    with pytest.raises(ValueError, match=message):
        await call(app)
    assert time.monotonic() - started < 2  # an answer, not a retried outage
    await nothing_stored(app)


async def test_a_name_at_the_limit_is_stored_and_used(app: tarry.App) -> None:
    key = "é" * MAX_NAME  # 512 bytes of UTF-8: inside every index on both stores

    @app.workflow("w")
    async def w(ctx: tarry.Context, step: tarry.Step) -> Any:
        return await step.wait_for_signal("s" * MAX_NAME, signal=key, timeout="1h")

    async with app.worker():
        run_id = await app.start("w", run_id="r" * MAX_NAME)
        await wait_for_status(app, run_id, "waiting")
        assert (await app.send_signal(key, {"ok": 1})).status == "delivered"
        assert await app.result(run_id, timeout=10) == {"ok": 1}


def test_names_in_declarations_are_checked_when_declared(app: tarry.App) -> None:
    with pytest.raises(tarry.ConfigError, match="workflow id is 257 characters"):
        app.workflow(TOO_LONG)
    with pytest.raises(tarry.ConfigError, match="event name is 257 characters"):
        app.workflow("w", on=TOO_LONG)
    with pytest.raises(ValueError, match="signal key is 257 characters"):
        tarry.signal(TOO_LONG)


async def test_a_step_id_past_the_limit_fails_the_run_saying_so(app: tarry.App) -> None:
    @app.workflow("w")
    async def w(ctx: tarry.Context, step: tarry.Step) -> Any:
        return await step.run(TOO_LONG, lambda: 1)

    async with app.worker():
        run_id = await app.start("w")
        with pytest.raises(tarry.RunFailed, match="step id is 257 characters long"):
            await app.result(run_id, timeout=10)


async def test_a_long_match_value_from_a_payload_matches(app: tarry.App) -> None:
    user = "u" * 4096

    @app.workflow("w")
    async def w(ctx: tarry.Context, step: tarry.Step) -> Any:
        found = await step.wait_for_event("e", event="app/done", match="data.userId", timeout="1h")
        return None if found is None else found.data["n"]

    async with app.worker():
        run_id = await app.start("w", {"userId": user})
        await wait_for_status(app, run_id, "waiting")
        sent = await app.send_event("app/done", {"userId": user, "n": 7})
        assert sent.resumed == [run_id]
        assert await app.result(run_id, timeout=10) == 7


async def test_nested_event_data_at_the_limit_reaches_its_wait(app: tarry.App) -> None:
    data: Any = 1
    for _ in range(253):
        data = {"n": data}

    @app.workflow("w")
    async def w(ctx: tarry.Context, step: tarry.Step) -> Any:
        found = await step.wait_for_event("e", event="app/deep", timeout="1h", lookback=None)
        return found is not None and found.data == data

    async with app.worker():
        run_id = await app.start("w")
        await wait_for_status(app, run_id, "waiting")
        assert (await app.send_event("app/deep", data)).resumed == [run_id]
        assert await app.result(run_id, timeout=10) is True


async def test_the_same_signal_key_twice_in_wait_for_any(app: tarry.App) -> None:
    @app.workflow("w")
    async def w(ctx: tarry.Context, step: tarry.Step) -> Any:
        woken = await step.wait_for_any("any", [tarry.signal("k"), tarry.signal("k")], timeout="1h")
        return None if woken is None else [woken.index, woken.value]

    async with app.worker():
        run_id = await app.start("w")
        await wait_for_status(app, run_id, "waiting")
        assert (await app.send_signal("k", {"v": 1})).status == "delivered"
        assert await app.result(run_id, timeout=10) == [0, {"v": 1}]


async def test_an_invoke_refuses_a_run_it_did_not_start(app: tarry.App) -> None:
    @app.workflow("parent")
    async def parent(ctx: tarry.Context, step: tarry.Step) -> Any:
        return await step.invoke("price", "child", {"n": 1})

    @app.workflow("child")
    async def child(ctx: tarry.Context, step: tarry.Step) -> Any:
        return "from a child"

    # A client starts the run the parent's child would be, before the parent does.
    await app.start("child", {"planted": True}, run_id="order-42.price")
    async with app.worker():
        await app.start("parent", run_id="order-42")
        with pytest.raises(tarry.RunFailed, match="this run did not start"):
            await app.result("order-42", timeout=10)


async def test_children_of_children_keep_ids_within_the_limit(app: tarry.App) -> None:
    @app.workflow("nest")
    async def nest(ctx: tarry.Context, step: tarry.Step) -> Any:
        depth = ctx.payload["depth"]
        if depth == 0:
            return ctx.run_id
        return await step.invoke("go" * 60, "nest", {"depth": depth - 1})

    async with app.worker():
        run_id = await app.start("nest", {"depth": 4}, run_id="n" * 200)
        deepest = await app.result(run_id, timeout=20)
    assert len(deepest) <= MAX_NAME
    assert deepest == child_run_id(
        child_run_id(child_run_id(child_run_id("n" * 200, "go" * 60), "go" * 60), "go" * 60),
        "go" * 60,
    )


async def test_a_run_past_its_history_limit_fails_at_its_next_step(
    make_app: Callable[..., tarry.App],
) -> None:
    app = make_app(max_history_bytes=1000)
    ran: list[int] = []

    @app.workflow("w")
    async def w(ctx: tarry.Context, step: tarry.Step) -> Any:
        for i in range(3):
            await step.run("big", lambda i=i: ran.append(i) or "x" * 600)
        return "done"

    async with app.worker():
        run_id = await app.start("w")
        with pytest.raises(tarry.RunFailed, match="past its limit of 1,000"):
            await app.result(run_id, timeout=10)
    assert ran == [0, 1]  # the third step never started
    run = await app.get_run(run_id)
    assert run.error["type"] == "HistoryLimitExceeded"


async def test_every_value_tarry_stores_is_capped_like_an_output(
    make_app: Callable[..., tarry.App],
) -> None:
    app = make_app(max_output_bytes=1000)
    big = {"blob": "x" * 2000}
    for call in (
        lambda: app.start("w", big),
        lambda: app.send_signal("k", big),
        lambda: app.send_event("app/x", big),
        lambda: app.send_message("r", "m", big),
    ):
        with pytest.raises(ValueError, match="over the limit of 1,000 bytes"):
            await call()
    await nothing_stored(app)
