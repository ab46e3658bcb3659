"""Cross-process wake on SQLite: a signal committed by one process resumes a run
parked in a worker of another, promptly, with inotify and with the polling that
stands in for it; several workers on one file, one of them killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

import tarry
from tarry.store.sqlite_watch import FileWatch

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("wake_proc.py")
BOUND = 0.2
"""Seconds within which a signal from another process must resume its run: generous
for a loaded CI machine (about 3 ms is typical with inotify, 30 ms polling)."""


class WakeWorker:
    def __init__(self, db: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), "--db", db, *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.mode = self._line().split()[1]

    @property
    def stdout(self) -> IO[str]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def _line(self) -> str:
        line = self.stdout.readline()
        if not line:
            raise RuntimeError(f"worker process exited ({self.proc.poll()})")
        return line

    def arrival(self) -> tuple[str, float]:
        key, at = self._line().split()
        return key, float(at)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        if self.proc.poll() is None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        self.stdout.close()


@pytest.fixture
def spawn(sqlite_url: str) -> Iterator[Any]:
    started: list[WakeWorker] = []

    def start(*extra: str) -> WakeWorker:
        started.append(WakeWorker(sqlite_url, *extra))
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
async def client(sqlite_url: str) -> AsyncIterator[tarry.App]:
    app = tarry.App(sqlite_url)

    @app.workflow("parked")
    async def parked(ctx: tarry.Context, step: Any) -> None:
        await step.wait_for_signal("wait", signal=ctx.payload["key"], timeout=None)

    yield app
    await app.close()


async def parked_on(app: tarry.App, key: str) -> str:
    run_id = await app.start("parked", {"key": key})
    give_up = time.monotonic() + 10
    while time.monotonic() < give_up:
        run = await app.get_run(run_id)
        if run.status == "waiting" and run.waiting_for is not None:
            return run_id
        await asyncio.sleep(0.002)
    raise AssertionError(f"run {run_id} never parked")


async def wake_latency(app: tarry.App, key: str, worker: WakeWorker) -> float:
    """Seconds from just before ``send_signal`` to the resumed handler's line."""
    await asyncio.sleep(0.02)  # the worker idle, its poller waiting
    t0 = time.perf_counter()
    await app.send_signal(key, {})
    # A wake that never comes fails here rather than hang the suite.
    got, at = await asyncio.wait_for(asyncio.to_thread(worker.arrival), 10)
    assert got == key
    return at - t0


async def wake_latencies(app: tarry.App, worker: WakeWorker, trips: int) -> list[float]:
    """``trips`` round trips, each on a run parked just before: their latencies."""
    latencies = []
    for i in range(trips):
        await parked_on(app, f"k{i}")
        latencies.append(await wake_latency(app, f"k{i}", worker))
    return latencies


async def test_a_signal_from_another_process_wakes_the_worker(
    spawn: Any, client: tarry.App
) -> None:
    worker = spawn()
    if sys.platform == "linux":
        assert worker.mode == "watching"
    latencies = await wake_latencies(client, worker, 5)
    assert sorted(latencies)[2] < BOUND, latencies


async def test_the_watch_alone_wakes_the_worker_after_its_own_commits(
    spawn: Any, client: tarry.App
) -> None:
    """The counter is read only every 30 s here, so each wake comes from the watch.
    The worker commits just before each signal (it parked the run), and another
    process's commit seen then was once taken for the worker's own and left to the
    next poll (72 ms at a 50 ms poll, 30 s here)."""
    if sys.platform != "linux":
        pytest.skip("inotify is Linux's")
    worker = spawn("--poll-interval", "30")
    assert worker.mode == "watching"
    latencies = await wake_latencies(client, worker, 5)
    assert sorted(latencies)[2] < BOUND, latencies


async def test_without_inotify_the_worker_polls(spawn: Any, client: tarry.App) -> None:
    worker = spawn("--no-watch")
    assert worker.mode == "polling"
    latencies = await wake_latencies(client, worker, 3)
    # Polling every 50 ms: slower, but still well within the bound.
    assert sorted(latencies)[1] < BOUND, latencies


async def test_two_workers_on_one_file_and_one_killed(spawn: Any, client: tarry.App) -> None:
    first, _second = spawn(), spawn()
    runs = {f"k{i}": await parked_on(client, f"k{i}") for i in range(6)}
    keys = list(runs)
    await asyncio.sleep(0.02)
    t0 = time.monotonic()
    for key in keys[:3]:
        await client.send_signal(key, {})
    await ended(client, [runs[key] for key in keys[:3]])
    assert time.monotonic() - t0 < 2 * BOUND

    os.kill(first.proc.pid, signal.SIGKILL)  # a listener gone without a word
    first.proc.wait()
    # Parked runs hold no lease: the survivor resumes every one that is signalled.
    await asyncio.sleep(0.02)
    t0 = time.monotonic()
    for key in keys[3:]:
        await client.send_signal(key, {})
    await ended(client, [runs[key] for key in keys[3:]])
    assert time.monotonic() - t0 < 2 * BOUND


async def ended(app: tarry.App, run_ids: list[str]) -> None:
    give_up = time.monotonic() + 10
    for run_id in run_ids:
        while (await app.get_run(run_id)).status != "completed":
            assert time.monotonic() < give_up, f"run {run_id} not resumed"
            await asyncio.sleep(0.001)


def test_file_watch_reports_writes_by_another_process(tmp_path: Path) -> None:
    target = tmp_path / "db-wal"
    target.write_bytes(b"")
    watch = FileWatch.open([str(target), str(tmp_path / "missing")])
    if watch is None:
        pytest.skip("no inotify here")
    try:
        assert not watch.wait(0.01)
        subprocess.run(
            [sys.executable, "-c", f"open({str(target)!r}, 'ab').write(b'x')"], check=True
        )
        assert watch.wait(5)
        assert not watch.wait(0.01)  # every event was consumed
        watch.interrupt()
        t0 = time.monotonic()
        assert not watch.wait(5)
        assert time.monotonic() - t0 < 1
    finally:
        watch.close()


def test_file_watch_on_nothing_watchable_is_none(tmp_path: Path) -> None:
    assert FileWatch.open([str(tmp_path / "missing"), str(tmp_path / "missing-wal")]) is None
