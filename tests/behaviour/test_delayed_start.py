"""Delayed starts, on both stores: ``start(..., delay=)`` / ``start_at=`` keeps the run
queued until its time, shows when and why, a cancel before then ends it without
running anything, bad input is refused before anything is stored; the same through
the sync twin, the testing Environment, the HTTP API, the dashboard and the CLI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

import tarry
from tarry.queued_reason import why_queued
from tarry.testing import Environment

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def counting_app(url: str, calls: list[str], **options: Any) -> tarry.App:
    app = tarry.App(url, lease="2s", retry_base="10ms", retry_cap="50ms", **options)

    @app.workflow("nudge")
    async def nudge(ctx: tarry.Context, step: tarry.Step) -> str:
        calls.append(ctx.run_id)
        return await step.run("send", lambda: f"nudged {ctx.payload['who']}")

    return app


@pytest.fixture
async def clocked(
    database_url: str,
) -> AsyncIterator[tuple[tarry.App, tarry.ManualClock, list[str]]]:
    clock = tarry.ManualClock(T0.timestamp())
    calls: list[str] = []
    app = counting_app(database_url, calls, clock=clock)
    async with app.worker():
        yield app, clock, calls
    await app.close()


async def settled(app: tarry.App, run_id: str, status: str, timeout: float = 10) -> tarry.Run:
    give_up = time.monotonic() + timeout
    while (run := await app.get_run(run_id)).status != status:
        assert time.monotonic() < give_up, f"run {run_id} still {run.status}"
        await asyncio.sleep(0.01)
    return run


async def test_a_delayed_run_stays_queued_until_its_time_then_runs(
    clocked: tuple[tarry.App, tarry.ManualClock, list[str]],
) -> None:
    app, clock, calls = clocked
    run_id = await app.start("nudge", {"who": "ann"}, delay="1h")
    await asyncio.sleep(0.2)  # a worker is idle beside it: nothing is due yet
    run = await app.get_run(run_id)
    assert (run.status, calls) == ("queued", [])
    assert run.due_at == T0 + timedelta(hours=1)
    assert why_queued(run, clock.now()) == "delayed until 2030-01-01 01:00:00 UTC"
    clock.advance("59m59s")
    await asyncio.sleep(0.2)
    assert (await app.get_run(run_id)).status == "queued"
    clock.advance("1s")
    run = await settled(app, run_id, "completed")
    assert run.output == "nudged ann" and calls == [run_id]
    assert run.due_at is None and why_queued(run, clock.now()) is None


async def test_start_at_an_aware_time_in_any_zone(
    clocked: tuple[tarry.App, tarry.ManualClock, list[str]],
) -> None:
    app, clock, calls = clocked
    berlin_ten = datetime(2030, 1, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))  # 09:00 UTC
    run_id = await app.start("nudge", {"who": "bo"}, start_at=berlin_ten)
    run = await app.get_run(run_id)
    assert run.status == "queued" and run.due_at == T0 + timedelta(hours=9)
    past = await app.start("nudge", {"who": "cy"}, start_at=T0 - timedelta(days=1))
    await settled(app, past, "completed")  # a time gone by: it starts now
    clock.advance("9h")
    await settled(app, run_id, "completed")
    assert calls == [past, run_id]


async def test_cancel_before_the_start_ends_it_and_nothing_runs(
    clocked: tuple[tarry.App, tarry.ManualClock, list[str]],
) -> None:
    app, clock, calls = clocked
    run_id = await app.start("nudge", {"who": "di"}, delay="1h")
    cancelled = await app.cancel(run_id, "not needed")
    assert cancelled.status == "cancelled" and cancelled.due_at is None
    clock.advance("2h")
    await asyncio.sleep(0.3)
    run = await app.get_run(run_id)
    assert run.status == "cancelled" and run.steps == [] and calls == []
    with pytest.raises(tarry.RunCancelled, match="not needed"):
        await app.result(run_id, timeout=1)


async def test_a_second_start_with_the_run_id_keeps_the_first_due_time(
    clocked: tuple[tarry.App, tarry.ManualClock, list[str]],
) -> None:
    app, _, _ = clocked
    first = await app.start("nudge", {"who": "ed"}, run_id="nudge-ed", delay="1h")
    again = await app.start("nudge", {"who": "ed"}, run_id="nudge-ed", delay="5m")
    assert first == again == "nudge-ed"
    assert (await app.get_run("nudge-ed")).due_at == T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"start_at": datetime(2030, 1, 1, 9, 0)}, "naive start_at '2030-01-01T09:00:00'"),
        ({"delay": "1 hour"}, "delay: invalid duration '1 hour'"),
        ({"delay": -5}, "delay: invalid duration -5"),
        ({"delay": "1h", "start_at": T0}, "pass delay or start_at, not both"),
        ({"start_at": "2030-01-01T09:00:00Z"}, "start_at must be an aware datetime"),
    ],
)
async def test_bad_delays_and_times_are_refused_before_anything_is_stored(
    clocked: tuple[tarry.App, tarry.ManualClock, list[str]], options: dict[str, Any], named: str
) -> None:
    app, _, _ = clocked
    with pytest.raises(ValueError, match=named.replace("(", r"\(")):
        await app.start("nudge", {"who": "fay"}, run_id="refused", **options)
    with pytest.raises(tarry.RunNotFound):
        await app.get_run("refused")


def test_the_sync_twin_takes_the_same_arguments(database_url: str) -> None:
    clock = tarry.ManualClock(T0.timestamp())
    app = counting_app(database_url, [], clock=clock)
    try:
        run_id = app.start_sync("nudge", {"who": "gus"}, delay="30m")
        assert app.get_run_sync(run_id).due_at == T0 + timedelta(minutes=30)
        with pytest.raises(ValueError, match="naive start_at"):
            app.start_sync("nudge", {"who": "gus"}, start_at=datetime(2030, 1, 2))
    finally:
        app.close_sync()


async def test_the_environment_starts_later_on_virtual_time(database_url: str) -> None:
    calls: list[str] = []
    app = counting_app("sqlite:///:memory:", calls)
    async with Environment(app, database=database_url, start=T0) as env:
        run_id = await env.start("nudge", {"who": "hal"}, delay="7d")
        later = await env.start("nudge", {"who": "ida"}, start_at=T0 + timedelta(days=8))
        await env.advance("6d23h")
        assert (await env.get_run(run_id)).status == "queued" and calls == []
        await env.advance("1h")
        assert await env.result(run_id) == "nudged hal"
        assert (await env.get_run(later)).status == "queued"
        await env.cancel(later)
        await env.advance("2d")
        assert calls == [run_id]


# -- the HTTP API and the dashboard --------------------------------------------------------


@pytest.fixture
async def served(
    clocked: tuple[tarry.App, tarry.ManualClock, list[str]],
) -> AsyncIterator[tuple[httpx.AsyncClient, tarry.ManualClock]]:
    from tarry.server import create_app

    app, clock, _ = clocked
    transport = httpx.ASGITransport(app=create_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client, clock


async def test_the_api_starts_later_and_shows_the_due_time_and_why(
    served: tuple[httpx.AsyncClient, tarry.ManualClock],
) -> None:
    client, clock = served
    started = await client.post(
        "/api/v1/runs", json={"workflow": "nudge", "payload": {"who": "jo"}, "delay": "2h"}
    )
    assert started.status_code == 201, started.text
    run_id = started.json()["run_id"]
    four_in_paris = "2030-01-01T04:00:00+01:00"
    at = await client.post(
        "/api/v1/runs", json={"workflow": "nudge", "payload": {}, "start_at": four_in_paris}
    )
    assert at.status_code == 201, at.text
    run = (await client.get(f"/api/v1/runs/{run_id}")).json()
    assert run["status"] == "queued"
    assert run["due_at"] == "2030-01-01T02:00:00Z"
    assert run["queued_reason"] == "delayed until 2030-01-01 02:00:00 UTC"
    listed = (await client.get("/api/v1/runs", params={"workflow": "nudge"})).json()["items"]
    reasons = sorted(item["queued_reason"] for item in listed)
    assert reasons == [
        "delayed until 2030-01-01 02:00:00 UTC",
        "delayed until 2030-01-01 03:00:00 UTC",
    ]

    page = await client.get(f"/runs/{run_id}")
    assert "delayed until 2030-01-01 02:00:00 UTC" in page.text
    runs_page = await client.get("/", params={"workflow": "nudge"})
    assert runs_page.text.count('class="queued-reason"') == 2

    clock.advance("2h")
    give_up = time.monotonic() + 10
    while (run := (await client.get(f"/api/v1/runs/{run_id}")).json())["status"] != "completed":
        assert time.monotonic() < give_up, run
        await asyncio.sleep(0.01)
    assert run["due_at"] is None and run["queued_reason"] is None


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"start_at": "2030-01-01T09:00:00"}, 422, "timezone"),
        ({"delay": "soon"}, 422, "body.delay: String should match pattern"),
        ({"delay": "999999999w"}, 400, "past the year 9999"),
        ({"delay": "1h", "start_at": "2030-01-01T09:00:00Z"}, 400, "not both"),
        ({"delay": 60}, 422, "delay"),
    ],
)
async def test_the_api_refuses_a_bad_time_naming_it(
    served: tuple[httpx.AsyncClient, tarry.ManualClock],
    body: dict[str, Any],
    status: int,
    says: str,
) -> None:
    client, _ = served
    answer = await client.post("/api/v1/runs", json={"workflow": "nudge", **body})
    assert answer.status_code == status, answer.text
    assert says in answer.text
    assert (await client.get("/api/v1/runs")).json()["items"] == []


# -- the CLI ----------------------------------------------------------------------------------


def test_the_cli_starts_later_and_lists_why(tmp_path: Path) -> None:
    from cli.conftest import TARGET, Tarry

    tarry_cli = Tarry(f"sqlite:///{tmp_path}/tarry.db", tmp_path)
    assert tarry_cli("init", TARGET).returncode == 0
    run_id = tarry_cli.json("start", "quick", "--delay", "1h")["run_id"]
    shown = tarry_cli.json("run", run_id)
    assert shown["status"] == "queued" and shown["queued_reason"].startswith("delayed until ")
    due = datetime.fromisoformat(shown["due_at"])
    assert timedelta(minutes=59) < due - datetime.now(UTC) <= timedelta(hours=1)
    listed = tarry_cli("runs")
    assert listed.returncode == 0 and "delayed until" in listed.stdout
    text = tarry_cli("run", run_id)
    assert f"queued: delayed until {due.strftime('%Y-%m-%d %H:%M:%S')} UTC" in text.stdout
    at = tarry_cli.json("start", "quick", "--start-at", "2099-01-01T09:00:00+01:00")["run_id"]
    assert tarry_cli.json("run", at)["due_at"] == "2099-01-01T08:00:00Z"
    naive = tarry_cli("start", "quick", "--start-at", "2099-01-01T09:00:00")
    assert naive.returncode == 2 and "has no offset" in naive.stderr
    bad = tarry_cli("start", "quick", "--delay", "later")
    assert bad.returncode == 2 and "--delay: invalid duration 'later'" in bad.stderr
    assert len(tarry_cli.json("runs")["items"]) == 2
