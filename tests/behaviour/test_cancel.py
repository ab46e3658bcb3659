"""Cancellation that holds.

After ``cancel()`` returns for a run that is executing: in the same process no
new step starts; from another process (a second App on the same database, which
knows nothing of this one's executions), no step starts after the worker's next
store write. A run that no worker holds (parked, sleeping, between retries) ends
at once. A cancelled run never completes and never parks.

Each test pins the moment of the cancel with an event the handler (or its step
function) sets and then waits on, never with a fixed sleep.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import tarry

from helpers import step, wait_for_status


class Gap:
    """A pause inside a handler or a step function: ``reached`` is set when the code
    gets there, and it carries on once ``go_on`` is set."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.go_on = asyncio.Event()

    async def __call__(self) -> None:
        self.reached.set()
        await self.go_on.wait()

    async def cancel_here(self, canceller: tarry.App, run_id: str, reason: str) -> tarry.Run:
        await asyncio.wait_for(self.reached.wait(), 10)
        run = await canceller.cancel(run_id, reason)
        self.go_on.set()
        return run


async def ends_cancelled(app: tarry.App, run_id: str, reason: str) -> tarry.Run:
    """``result()`` with no timeout of its own raises RunCancelled; bounded here only so
    that a run left parked fails the test instead of hanging it."""
    with pytest.raises(tarry.RunCancelled, match=reason):
        await asyncio.wait_for(app.result(run_id), 10)
    run = await app.get_run(run_id)
    assert run.status == "cancelled" and run.output is None and run.waiting_for is None
    return run


def next_boundaries(ran: list[str]) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    """Every kind of step boundary, as the handler's next call after the gap."""

    def run_fn() -> str:
        ran.append("next")
        return "next"

    return {
        "run": lambda step: step.run("next", run_fn),
        "sleep": lambda step: step.sleep("next", "1h"),
        "wait_for_signal": lambda step: step.wait_for_signal("next", signal="probe", timeout=None),
        "wait_for_event": lambda step: step.wait_for_event(
            "next", event="app/probe", timeout=None, lookback=None
        ),
        "wait_for_message": lambda step: step.wait_for_message("next", timeout=None),
        "wait_for_any": lambda step: step.wait_for_any(
            "next", [tarry.signal("probe"), tarry.message("probe")], timeout=None
        ),
        "send_signal": lambda step: step.send_signal("next", "probe", {"sent": True}),
        "send_event": lambda step: step.send_event("next", "app/probe", {"sent": True}),
        "invoke": lambda step: step.invoke("next", "child"),
    }


BOUNDARIES = sorted(next_boundaries([]))
WAITS = ["sleep", "wait_for_signal", "wait_for_event", "wait_for_message", "wait_for_any"]


def register_gapped(app: tarry.App, gap: Gap, kind: str, ran: list[str]) -> None:
    """``gapped``: a step, the gap (outside any step: no store write happens in it),
    then the boundary ``kind``, then one more step."""
    boundary = next_boundaries(ran)[kind]

    @app.workflow("gapped")
    async def gapped(ctx, step):
        await step.run("first", lambda: "one")
        await gap()
        await boundary(step)
        await step.run("after", lambda: ran.append("after"))
        return "completed"

    @app.workflow("child")
    async def child(ctx, step):
        ran.append("child")
        return "child"


async def nothing_crossed(app: tarry.App, run: tarry.Run, ran: list[str]) -> None:
    assert ran == []
    assert [s.id for s in run.steps] == ["first"]
    assert (await app.list_events(name="app/probe")).items == []
    assert (await app.list_runs(workflow="child")).items == []


# -- a run executing in this process -------------------------------------------------


@pytest.mark.parametrize("kind", BOUNDARIES)
async def test_cancel_here_stops_the_next_step_of_any_kind(app, kind: str) -> None:
    gap, ran = Gap(), []
    register_gapped(app, gap, kind, ran)
    async with app.worker():
        run_id = await app.start("gapped")
        during = await gap.cancel_here(app, run_id, "stop here")
        assert during.status == "running"  # it was executing: flagged, not yet ended
        run = await ends_cancelled(app, run_id, "stop here")
    await nothing_crossed(app, run, ran)


async def test_cancel_here_after_the_last_step_ends_cancelled_not_completed(app) -> None:
    gap = Gap()

    @app.workflow("last")
    async def last(ctx, step):
        await step.run("only", lambda: "one")
        await gap()
        return "completed"

    async with app.worker():
        run_id = await app.start("last")
        await gap.cancel_here(app, run_id, "too late to complete")
        run = await ends_cancelled(app, run_id, "too late to complete")
    assert [s.id for s in run.steps] == ["only"]


async def test_cancel_here_stops_a_plain_def_handler(app) -> None:
    reached, go_on = threading.Event(), threading.Event()
    ran: list[str] = []

    @app.workflow("plain")
    def plain(ctx, step):
        step.run("first", lambda: "one")
        reached.set()
        go_on.wait(10)
        step.run("next", lambda: ran.append("next"))
        return "completed"

    async with app.worker():
        run_id = await app.start("plain")
        assert await asyncio.to_thread(reached.wait, 10)
        await app.cancel(run_id, "stop the thread")
        go_on.set()
        run = await ends_cancelled(app, run_id, "stop the thread")
    assert ran == [] and [s.id for s in run.steps] == ["first"]


async def test_cancel_here_while_a_step_runs_ends_after_that_step(app) -> None:
    gap, ran = Gap(), []

    @app.workflow("busy")
    async def busy(ctx, step):
        await step.run("first", gap)
        await step.run("second", lambda: ran.append("second"))

    async with app.worker():
        run_id = await app.start("busy")
        await gap.cancel_here(app, run_id, "mid-step")
        run = await ends_cancelled(app, run_id, "mid-step")
    assert ran == [] and [s.id for s in run.steps] == ["first"]


# -- cancelled from another process -------------------------------------------------


@pytest.mark.parametrize("kind", BOUNDARIES)
async def test_cancel_from_another_app_holds_from_the_next_store_write(make_app, kind: str) -> None:
    app = make_app()
    client = make_app()  # another process's client: it knows nothing of app's runs
    gap, ran = Gap(), []
    register_gapped(app, gap, kind, ran)
    async with app.worker():
        run_id = await app.start("gapped")
        await gap.cancel_here(client, run_id, "from afar")
        run = await ends_cancelled(client, run_id, "from afar")
    # The step after the gap may start (its save or send is the worker's first store
    # write since the cancel, and reports it) but nothing starts after that write,
    # and a wait never parks: its park is that write, and ends the run instead.
    assert "after" not in ran and "after" not in [s.id for s in run.steps]
    assert all(s.status != "waiting" for s in run.steps)
    if kind in WAITS:
        assert [s.id for s in run.steps] in (["first"], ["first", "next"])


async def test_cancel_from_another_app_after_the_last_step_ends_cancelled(make_app) -> None:
    app, client = make_app(), make_app()
    gap = Gap()

    @app.workflow("last")
    async def last(ctx, step):
        await step.run("only", lambda: "one")
        await gap()
        return "completed"

    async with app.worker():
        run_id = await app.start("last")
        await gap.cancel_here(client, run_id, "before the end")
        await ends_cancelled(client, run_id, "before the end")


async def test_cancel_from_another_app_mid_step_stops_at_its_save(make_app) -> None:
    app, client = make_app(), make_app()
    gap, ran = Gap(), []

    @app.workflow("busy")
    async def busy(ctx, step):
        await step.run("first", gap)
        await step.run("second", lambda: ran.append("second"))

    async with app.worker():
        run_id = await app.start("busy")
        await gap.cancel_here(client, run_id, "stop at the save")
        run = await ends_cancelled(client, run_id, "stop at the save")
    assert ran == [] and [s.id for s in run.steps] == ["first"]


@pytest.mark.parametrize("where", ["here", "afar"])
async def test_a_step_failing_while_cancel_is_pending_is_not_retried(make_app, where) -> None:
    app = make_app()
    canceller = app if where == "here" else make_app()
    gap = Gap()
    calls: list[int] = []

    async def flaky() -> None:
        calls.append(1)
        await gap()
        raise tarry.RetryAfter("1h")

    @app.workflow("flaky")
    async def flaky_flow(ctx, step):
        await step.run("flaky", flaky)

    async with app.worker():
        run_id = await app.start("flaky")
        await gap.cancel_here(canceller, run_id, "no retry")
        await ends_cancelled(canceller, run_id, "no retry")
    assert calls == [1]


# -- a run no worker holds ends at once ---------------------------------------------


async def _flaky_retrying(app: tarry.App, run_id: str) -> None:
    for _ in range(1000):
        run = await app.get_run(run_id)
        if run.steps and step(run, "flaky").status == "retrying":
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"run {run_id} never got to retry its step: {run}")


@pytest.mark.parametrize("where", ["here", "afar"])
@pytest.mark.parametrize("state", ["parked", "sleeping", "between_retries"])
async def test_cancel_of_a_run_no_worker_holds_ends_it_at_once(
    make_app, state: str, where: str
) -> None:
    app = make_app()
    canceller = app if where == "here" else make_app()
    calls: list[int] = []

    def always_later() -> None:
        calls.append(1)
        raise tarry.RetryAfter("1h")

    @app.workflow("idle")
    async def idle(ctx, step):
        if state == "parked":
            await step.wait_for_signal("w", signal="never", timeout=None)
        elif state == "sleeping":
            await step.sleep("w", "1h")
        else:
            await step.run("flaky", always_later)
        return "completed"

    async with app.worker():
        run_id = await app.start("idle")
        if state == "between_retries":
            await _flaky_retrying(app, run_id)
        else:
            await wait_for_status(app, run_id, "waiting")
        run = await canceller.cancel(run_id, "not needed")
        assert run.status == "cancelled"  # at once, before cancel returns
        await ends_cancelled(app, run_id, "not needed")
    if state == "between_retries":
        assert calls == [1]
    else:
        assert (await app.send_signal("never", {})).status == "buffered"
