"""DBOS side of signal_latency.py / postgres.py (signal): ``DBOS.send`` -> the line
after ``DBOS.recv`` (with a topic) in the waiting workflow.

SQLite (default): one process; the workflow is started with ``start_workflow_async``
under a known workflow ID, the driver waits (outside the timed region) until the
workflow has reached the line before ``recv_async`` plus 10 ms, then times
``await DBOS.send_async(id, data, topic)`` -> the line after ``recv_async`` (the
handler records ``time.perf_counter()`` into a future). With DBOS's defaults a
SQLite system database has no push notifications: a listener thread polls every
waiting ``recv`` once a second (``notification_listener_polling_interval_sec``), so
before each send the driver also sleeps a random 0-1 s (untimed) to avoid locking
onto the poll's phase.

PostgreSQL (``--database URL``; a fresh database): the workflow runs in a worker
process (started there on the driver's request, not timed); the driver, another
process, sends with ``DBOSClient.send_async`` and the worker prints ``time.time()``
on the line after ``recv_async`` (LISTEN/NOTIFY, DBOS's default on PostgreSQL).

    /tmp/dbosvenv/bin/python bench/dbos_signal.py [--n 100] [--database URL] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dbos import DBOS, SetWorkflowID

from _common import percentile, print_table
from _dbos_common import config, finish, launch, system_database

TOPIC = "sig"
_parked: dict[str, asyncio.Future[None]] = {}
_arrived: dict[str, asyncio.Future[float]] = {}


def _resolve(futures: dict[str, Any], key: str, value: Any) -> None:
    fut = futures.get(key)
    if fut is not None and not fut.done():
        fut.get_loop().call_soon_threadsafe(lambda: None if fut.done() else fut.set_result(value))


def register(print_marks: bool) -> Any:
    @DBOS.workflow(name="signalled")
    async def signalled(key: str) -> None:
        if print_marks:
            print(f"parked {key}", flush=True)
        else:
            _resolve(_parked, key, None)
        await DBOS.recv_async(TOPIC, timeout_seconds=3600)
        if print_marks:
            print(f"{key} {time.time():.6f}", flush=True)
        else:
            _resolve(_arrived, key, time.perf_counter())

    return signalled


async def in_process(url: str, n: int) -> dict[str, list[float]]:
    DBOS(config=config(url))
    wf = register(print_marks=False)
    DBOS.launch()
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    sends: list[float] = []
    try:
        for i in range(n):
            key = f"sig-{i}"
            _parked[key] = loop.create_future()
            _arrived[key] = loop.create_future()
            with SetWorkflowID(key):
                await DBOS.start_workflow_async(wf, key)
            await asyncio.wait_for(_parked[key], 30)
            await asyncio.sleep(0.01)  # let recv_async register its wait
            # Round trips would otherwise lock onto the listener's 1 s polling phase
            # (each send right after a poll: ~1 s every time); a random offset gives
            # the latency a send at an arbitrary moment sees.
            await asyncio.sleep(random.uniform(0, 1))
            t0 = time.perf_counter()
            await DBOS.send_async(key, {"n": 1}, TOPIC)
            t_sent = time.perf_counter()
            t_arrived = await asyncio.wait_for(_arrived[key], 60)
            latencies.append((t_arrived - t0) * 1000)
            sends.append((t_sent - t0) * 1000)
            print(f"  {i}: {latencies[-1]:.2f} ms", file=sys.stderr)
    finally:
        DBOS.destroy(destroy_registry=True)
    return {"latency_ms": latencies, "send_ms": sends}


def worker_main(url: str) -> None:
    """Worker process: starts ``signalled(key)`` for each ``key`` line read on stdin."""
    DBOS(config=config(url))
    wf = register(print_marks=True)
    DBOS.launch()
    print("ready", flush=True)
    for line in sys.stdin:
        key = line.strip()
        with SetWorkflowID(key):
            DBOS.start_workflow(wf, key)


async def cross_process(url: str, n: int) -> dict[str, list[float]]:
    from dbos import DBOSClient

    launch(url)  # migrate the fresh database once, then leave it to the worker
    DBOS.destroy(destroy_registry=True)
    worker = subprocess.Popen(
        [sys.executable, __file__, "--worker", url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdin is not None and worker.stdout is not None
    assert worker.stdout.readline().strip() == "ready"
    client = DBOSClient(system_database_url=url)
    latencies: list[float] = []
    sends: list[float] = []
    lock = threading.Lock()
    try:
        for i in range(n):
            key = f"sig-{i}"
            with lock:
                worker.stdin.write(key + "\n")
                worker.stdin.flush()
            line = await asyncio.to_thread(worker.stdout.readline)
            assert line.split() == ["parked", key], line
            await asyncio.sleep(0.01)
            sent = time.time()
            await client.send_async(key, {"n": 1}, TOPIC)
            sends.append((time.time() - sent) * 1000)
            line = await asyncio.to_thread(worker.stdout.readline)
            got, arrived = line.split()
            assert got == key, line
            latencies.append((float(arrived) - sent) * 1000)
    finally:
        worker.terminate()
        worker.wait(10)
        client.destroy()
    return {"latency_ms": latencies, "send_ms": sends}


def summarize(values: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(values), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "max": max(values)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="sequential round trips")
    parser.add_argument("--database", help="PostgreSQL server URL (a fresh database is made)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker)
        return
    with system_database(args.database) as url:
        fn = cross_process if args.database else in_process
        raw = asyncio.run(fn(url, args.n))
    lat, send = summarize(raw["latency_ms"]), summarize(raw["send_ms"])
    store = "postgres" if args.database else "sqlite"
    if not args.json:
        print(f"\nDBOS send -> line after recv (ms), {args.n} round trips, {store}")
        print_table(["p50", "p90", "p99", "max", "send p50"],
                    [[f"{lat[k]:.2f}" for k in ("p50", "p90", "p99", "max")]
                     + [f"{send['p50']:.2f}"]])  # fmt: skip
    finish(f"dbos_signal_{store}", args.json,
           {"params": vars(args), "latency_ms": lat, "send_ms": send})  # fmt: skip


if __name__ == "__main__":
    main()
