"""Runs parked on several things at once, through the API and the dashboard: two
branches side by side, a wait for all of two conditions with one arrived, and a 2-of-3
quorum with one vote in."""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

import tarry
from tarry.testing import Environment

from .conftest import asgi_client
from .flows import FAST, register
from .parallel_flows import register_parallel


@pytest.fixture
async def client(sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = register_parallel(register(tarry.App(sqlite_url, **FAST)))
    async with app.worker(), asgi_client(app) as c:
        yield c
    await app.close()


async def run_until(
    client: httpx.AsyncClient, run_id: str, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    give_up = time.monotonic() + 10
    while True:
        run: dict[str, Any] = (await client.get(f"/api/v1/runs/{run_id}")).json()
        if run["status"] == "waiting" and ready(run["waiting_for"]):
            return run
        assert time.monotonic() < give_up, f"run {run_id} never got there: {run}"
        await asyncio.sleep(0.02)


async def park(client: httpx.AsyncClient, workflow: str, order: str) -> str:
    response = await client.post(
        "/api/v1/runs", json={"workflow": workflow, "payload": {"order": order}}
    )
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run_id"]
    await run_until(client, run_id, lambda w: w is not None)
    return run_id


async def signal(client: httpx.AsyncClient, key: str) -> None:
    response = await client.post("/api/v1/signals", json={"signal": key, "data": {"ok": 1}})
    assert response.json()["status"] == "delivered", response.text


def conditions_shown(page: str) -> list[tuple[str, str]]:
    """(state, condition) for each condition the run page lists, in its order."""
    found = re.findall(
        r'<li class="condition (arrived|pending)">.*?</span> (\w+) <code>(.*?)</code>'
        r' <span class="state">(arrived|pending)</span>',
        page,
    )
    assert all(state == shown for state, _, _, shown in found)
    return [(state, f"{kind} {html.unescape(name)}") for state, kind, name, _ in found]


async def test_branches_list_each_wait(client: httpx.AsyncClient) -> None:
    run_id = await park(client, "paired", "p-1")
    run = await run_until(client, run_id, lambda w: w["kind"] == "branches")
    w = run["waiting_for"]
    assert w["conditions"] == [] and w["arrived"] == []
    branches = {b["step"]: b for b in w["waits"]}
    assert set(branches) == {"contract", "payment"}
    assert branches["contract"]["kind"] == "signal"
    assert branches["contract"]["key"] == "contract:p-1"
    assert branches["payment"]["kind"] == "message" and branches["payment"]["key"] == "payment"
    assert branches["payment"]["expires_at"] < branches["contract"]["expires_at"]  # 1 d, 7 d
    assert w["expires_at"] == branches["payment"]["expires_at"]  # the earliest
    assert all(b["waits"] == [] and b["conditions"] == [] for b in w["waits"])
    listed = (await client.get("/api/v1/runs", params={"workflow": "paired"})).json()
    assert listed["items"][0]["waiting_for"] == w

    page = (await client.get(f"/runs/{run_id}")).text
    assert "2 branches side by side" in page and "the first deadline" in page
    items = re.findall(r'<li class="wait" data-step="(\w+)">(.*?)</li>', page, re.S)
    shown = {step: " ".join(re.sub(r"<[^>]+>", "", text).split()) for step, text in items}
    assert set(shown) == {"contract", "payment"}
    assert shown["contract"].startswith("signal contract:p-1 at step contract until 20")
    assert shown["payment"].startswith("message payment at step payment until 20")
    for step, branch in branches.items():  # each with its own deadline
        deadline = datetime.fromisoformat(branch["expires_at"]).astimezone(UTC)
        assert f"until {deadline:%Y-%m-%d %H:%M:%S} UTC" in shown[step]
    table = (await client.get("/", params={"workflow": "paired"})).text
    assert "2 waits: signal, message" in table


async def test_wait_for_all_marks_what_arrived(client: httpx.AsyncClient) -> None:
    run_id = await park(client, "documents", "d-1")
    sent = await client.post(
        f"/api/v1/runs/{run_id}/messages", json={"name": "payment", "data": {"paid": 10}}
    )
    assert sent.status_code == 202
    run = await run_until(client, run_id, lambda w: w["arrived"] == [1])
    w = run["waiting_for"]
    assert w["kind"] == "all" and w["step"] == "docs" and w["waits"] == []
    assert w["conditions"] == ["signal contract:d-1", "message payment"]
    listed = (await client.get("/api/v1/runs", params={"workflow": "documents"})).json()
    assert listed["items"][0]["waiting_for"] == w  # the listing reads the arrivals too

    page = (await client.get(f"/runs/{run_id}")).text
    assert conditions_shown(page) == [
        ("arrived", "message payment"),
        ("pending", "signal contract:d-1"),
    ]
    assert "1 of 2 arrived" in page and "✓" in page
    table = (await client.get("/", params={"workflow": "documents"})).text
    assert "all 1 of 2 arrived <code>docs</code>" in table

    await signal(client, "contract:d-1")
    give_up = time.monotonic() + 10
    while (run := (await client.get(f"/api/v1/runs/{run_id}")).json())["status"] != "completed":
        assert time.monotonic() < give_up, run
        await asyncio.sleep(0.02)
    assert run["waiting_for"] is None
    assert 'class="condition' not in (await client.get(f"/runs/{run_id}")).text


async def test_quorum_shows_the_votes_in_and_those_pending(client: httpx.AsyncClient) -> None:
    run_id = await park(client, "review", "r-1")
    await signal(client, "review:r-1:cy")
    run = await run_until(client, run_id, lambda w: w["arrived"] == [2])
    w = run["waiting_for"]
    assert w["kind"] == "any" and w["step"] == "votes"
    assert w["conditions"] == [f"signal review:r-1:{who}" for who in ("ann", "bob", "cy")]

    page = (await client.get(f"/runs/{run_id}")).text
    assert conditions_shown(page) == [
        ("arrived", "signal review:r-1:cy"),
        ("pending", "signal review:r-1:ann"),
        ("pending", "signal review:r-1:bob"),
    ]
    live = (await client.get(f"/runs/{run_id}", params={"fragment": "live"})).text
    assert conditions_shown(live) == conditions_shown(page)
    table = (await client.get("/", params={"workflow": "review"})).text
    assert "any 1 of 3 arrived (needs 2) <code>votes</code>" in table


async def test_a_listing_reads_the_arrivals_on_both_stores(database_url: str) -> None:
    app = register_parallel(tarry.App("sqlite:///:memory:"))
    async with Environment(app, database=database_url) as env:
        docs = await env.start("documents", {"order": "l-1"})
        paired = await env.start("paired", {"order": "l-2"})
        plain = await env.start("review", {"order": "l-3"})
        await env.run_until_idle()
        await env.send_message(docs, "payment", {"paid": 1})
        await env.send_signal("review:l-3:bob", {"ok": 1})
        await env.run_until_idle()
        listed = {r.id: r.waiting_for for r in (await env.app.list_runs()).items}
        for run_id in (docs, paired, plain):
            assert listed[run_id] == (await env.get_run(run_id)).waiting_for
        assert listed[docs].arrived == [1] and listed[plain].arrived == [1]  # type: ignore[union-attr]
        assert [w.kind for w in listed[paired].waits] == ["signal", "message"]  # type: ignore[union-attr]
