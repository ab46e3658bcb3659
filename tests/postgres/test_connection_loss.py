"""Dropped connections (the server kills our sessions): operations retry and succeed,
and the LISTEN connection comes back and wakes its listeners once to catch up."""

from __future__ import annotations

import asyncio
import threading
import time

import psycopg

from tarry.store.base import NewRun
from tarry.store.postgres import PostgresStore

from .conftest import POSTGRES_URL


def _terminate_sessions(schema: str) -> int:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (f"tarry/{schema}",),
        ).fetchall()
    return len(rows)


async def test_operations_survive_killed_sessions(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.open()
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        while not stop.wait(0.05):
            killed.append(_terminate_sessions(store.schema))

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    results: list[tuple[str, bool]] = []
    try:
        # Waves of concurrent starts (group-committed, so each wave is quick) until
        # sessions have been killed under them several times.
        give_up = time.monotonic() + 30
        while len(results) < 300 or sum(killed) < 3:
            assert time.monotonic() < give_up, f"only {sum(killed)} sessions killed"
            wave = range(len(results), len(results) + 20)
            results += await asyncio.gather(
                *(store.create_run(NewRun(f"run-{n}", "wf", b"{}")) for n in wave)
            )
    finally:
        stop.set()
        thread.join()
    try:
        assert sum(killed) >= 3
        assert {run_id for run_id, _ in results} == {f"run-{n}" for n in range(len(results))}
        for n in range(len(results)):
            found = await store.get_run(f"run-{n}")
            assert found is not None and found[0].status == "queued"
    finally:
        await store.close()


async def test_the_listener_reconnects_and_wakes_once_to_catch_up(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    other = PostgresStore(pg_url)
    await store.open()
    await other.open()
    woken = threading.Event()
    store.add_wake_listener(woken.set)
    try:
        await asyncio.sleep(0.2)
        woken.clear()
        # Every session of the schema goes, the LISTEN one included: the store must
        # notice, reconnect and call its listeners, since what was sent meanwhile is lost.
        assert await asyncio.to_thread(_terminate_sessions, store.schema) > 0
        assert await asyncio.to_thread(woken.wait, 5), "no catch-up wake after reconnecting"
        woken.clear()
        await asyncio.sleep(0.3)
        sent = time.monotonic()
        await other.create_run(NewRun("after-reconnect", "wf", b"{}"))
        assert await asyncio.to_thread(woken.wait, 5), "NOTIFY did not arrive after reconnecting"
        assert time.monotonic() - sent < 1.0
    finally:
        await store.close()
        await other.close()
