"""What the PostgreSQL store does that SQLite has no need for: one clock for every
machine, sessions that cannot hold locks while paused, refusals told from outages."""

from __future__ import annotations

import secrets
import time
import types
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

import tarry
from tarry.errors import StoreError, StoreUnavailable
from tarry.store import open_store
from tarry.store.postgres import PostgresStore


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresStore]:
    opened = open_store(pg_url)
    assert isinstance(opened, PostgresStore)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def server_time(url: str) -> float:
    with psycopg.connect(url.split("?")[0]) as conn:
        row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
    assert row is not None
    return float(row[0])


async def test_a_machine_whose_clock_is_8s_ahead_reads_the_servers_time(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ahead = types.SimpleNamespace(
        time=lambda: time.time() + 8.0, monotonic=time.monotonic, sleep=time.sleep
    )
    import tarry.clock
    import tarry.store.postgres_setup

    monkeypatch.setattr(tarry.clock, "_wall", ahead.time)
    monkeypatch.setattr(tarry.store.postgres_setup, "time", ahead)
    app = tarry.App(pg_url)
    try:
        await app._open()
        assert abs(app.clock.now() - server_time(pg_url)) < 0.5
        # What the store writes is the server's time too: a run created now is due now.
        run_id = await app.start("w")
        run = await app.get_run(run_id)
        assert abs(run.created_at.timestamp() - server_time(pg_url)) < 1.0
    finally:
        await app.close()


async def test_a_manual_clock_is_the_one_time_there_is(pg_url: str) -> None:
    clock = tarry.ManualClock(start=1_000_000.0)
    app = tarry.App(pg_url, clock=clock)
    try:
        run_id = await app.start("w")
        assert app.clock is clock
        assert (await app.get_run(run_id)).created_at.timestamp() == 1_000_000.0
    finally:
        await app.close()


async def test_a_session_paused_in_a_transaction_is_ended_by_the_server(
    store: PostgresStore,
) -> None:
    async def setting(tx: Any) -> Any:
        return await tx.select("SHOW idle_in_transaction_session_timeout", {})

    assert await store._transact(setting) == [("10s",)]


async def test_a_statement_the_server_refuses_fails_at_once_not_as_an_outage(
    store: PostgresStore,
) -> None:
    # Below the App (which refuses such a key itself): an index entry past the
    # server's limit is a refusal, the same every time, so it is not retried.
    key = secrets.token_urlsafe(8000)
    started = time.monotonic()
    with pytest.raises(StoreError, match="refused") as raised:
        await store.send_signal(key, b"{}", strict=False, retention_seconds=60)
    assert not isinstance(raised.value, StoreUnavailable)
    assert time.monotonic() - started < 5
    # Nothing was stored, and the store goes on working.
    assert (await store.send_signal("fine", b"{}", strict=False, retention_seconds=60)).status
