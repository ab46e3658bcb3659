"""LISTEN/NOTIFY: a commit in one process wakes an idle worker in another at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

import tarry

from .conftest import worker_logs


async def _wait_parked(client: tarry.App, run_id: str, tmp_path: Path) -> None:
    give_up = time.monotonic() + 60
    while (await client.get_run(run_id)).status != "waiting":
        if time.monotonic() > give_up:
            raise AssertionError(f"the run never parked:\n{worker_logs(tmp_path)}")
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_a_signal_from_another_process_wakes_an_idle_worker_at_once(
    pg_url: str, spawn_workers: Any, tmp_path: Path
) -> None:
    spawn_workers(pg_url, 1)
    client = tarry.App(pg_url)
    try:
        for n in range(3):
            # No deadline: the parked run is not due, so the worker sleeps with no
            # alarm at all, and only a NOTIFY from this process can wake it.
            run_id = await client.start("order", {"timeout": None}, run_id=f"wake-{n}")
            await _wait_parked(client, run_id, tmp_path)
            await asyncio.sleep(0.5)
            sent = time.time()
            result = await client.send_signal(f"go:{run_id}", {"n": n})
            assert result.status == "delivered"
            output = await client.result(run_id, timeout=10)
            latency = output["woke_at"] - sent
            assert latency < 0.5, f"the worker woke {latency:.3f}s after the signal"
    finally:
        await client.close()


@pytest.mark.slow
async def test_a_run_started_in_another_process_is_picked_up_at_once(
    pg_url: str, spawn_workers: Any, tmp_path: Path
) -> None:
    spawn_workers(pg_url, 1)
    client = tarry.App(pg_url)
    try:
        run_id = await client.start("order", {"timeout": None}, run_id="warm-up")
        await _wait_parked(client, run_id, tmp_path)  # the worker is up and idle
        await asyncio.sleep(0.5)
        sent = time.time()
        second = await client.start("order", {"timeout": None}, run_id="second")
        await _wait_parked(client, second, tmp_path)
        run = await client.get_run(second)
        assert run.steps[0].started_at is not None
        assert run.steps[0].started_at.timestamp() - sent < 0.5
    finally:
        await client.close()
