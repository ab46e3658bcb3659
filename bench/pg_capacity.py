"""PostgreSQL capacity: how many runs park, and how many events resolve, per second.

One worker process (default concurrency) on a fresh schema (dropped after); the
driver, another process, does the starting and sending:

park    N runs start (gather in chunks of 500) and park on ``wait_for_event(match=
        "data.key")``, each on its own key: first start -> all N ``waiting``.
events  then N events are sent, ``--senders`` at a time, each matching one parked
        run: the ``send_event`` rate (the driver's), and first send -> all N ended
        (the resumed runs' rate, the worker's).

Counts are read in SQL every 50 ms. For 3-step throughput and signal latency see
``bench/postgres.py``; for one run woken among 100,000 parked, ``bench/pg_scale.py``.

    .venv/bin/python bench/pg_capacity.py [--n 20000] [--senders 64]
        [--url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tarry
from _common import machine_info, write_json

DEFAULT_URL = os.environ.get("TARRY_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def make_app(url: str) -> tarry.App:
    app = tarry.App(url)

    @app.workflow("listener")
    async def listener(ctx: tarry.Context, step: tarry.Step) -> None:
        await step.wait_for_event("wait", event="app/match", match="data.key", timeout=None)

    return app


async def worker_main(url: str) -> None:
    app = make_app(url)
    async with app.worker():
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await app.close()


def count(base: str, schema: str, status: str) -> int:
    import psycopg

    with psycopg.connect(base) as conn:
        row = conn.execute(
            f'SELECT count(*) FROM "{schema}".runs WHERE status = %s', (status,)
        ).fetchone()
    return int(row[0]) if row else 0


async def until(base: str, schema: str, status: str, n: int) -> float:
    while await asyncio.to_thread(count, base, schema, status) < n:
        await asyncio.sleep(0.05)
    return time.perf_counter()


async def measure(base: str, n: int, senders: int) -> dict[str, Any]:
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = f"{base}{'&' if '?' in base else '?'}schema={schema}"
    app = make_app(url)
    await app._open()
    worker = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--worker", url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        t0 = time.perf_counter()
        for lo in range(0, n, 500):
            await asyncio.gather(
                *(app.start("listener", {"key": k}) for k in range(lo, min(n, lo + 500)))
            )
        t_parked = await until(base, schema, "waiting", n)

        keys = iter(range(n))

        async def sender() -> None:
            for key in keys:
                await app.send_event("app/match", {"key": key})

        t1 = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(senders)))
        t_sent = time.perf_counter()
        t_done = await until(base, schema, "completed", n)
    finally:
        assert worker.stdin is not None
        worker.stdin.close()
        worker.wait(30)
        await app.close()
        with psycopg.connect(base.partition("?")[0], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return {
        "n": n,
        "senders": senders,
        "park_per_s": n / (t_parked - t0),
        "send_event_per_s": n / (t_sent - t1),
        "resumed_and_ended_per_s": n / (t_done - t1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--senders", type=int, default=64)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker_main(args.worker))
        return
    result = asyncio.run(measure(args.url, args.n, args.senders))
    print(json.dumps(result))
    path = write_json(
        "pg_capacity", {"benchmark": "pg_capacity", "machine": machine_info(), "result": result}
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
