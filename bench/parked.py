"""100,000 parked runs: what does a worker hold for them?

A worker runs in its own process and reports its resident memory (RSS) and
thread count. The driver starts 100 warm-up runs (they park and are signalled to
completion), takes the worker's figures with 0 runs parked, then starts N runs
that park on a signal with no deadline and waits until all N are ``waiting``.
Reported: parking rate (first start to the last one parked), the worker's RSS
growth and thread count with N parked. Targets: RSS growth <= 20 MB, threads
flat, parking >= 2,000 runs/s.

    .venv/bin/python bench/parked.py [--n 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tarry
from _common import count_status, machine_info, print_table, temp_sqlite_url, write_json


def make_app(url: str) -> tarry.App:
    app = tarry.App(url)

    @app.workflow("parked")
    async def parked(ctx: tarry.Context, step: tarry.Step) -> None:
        await step.wait_for_signal("wait", signal=ctx.payload["key"], timeout=None)

    return app


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def worker_main(url: str, stats_path: str) -> None:
    """The worker process: run a worker, write RSS and threads every 0.2 s."""
    app = make_app(url)
    async with app.worker(concurrency=256):
        while True:
            gc.collect()
            figures = {"rss_mb": rss_mb(), "threads": threading.active_count(),
                       "tasks": len(asyncio.all_tasks()), "at": time.time()}  # fmt: skip
            with open(stats_path + ".tmp", "w") as out:
                json.dump(figures, out)
            os.replace(stats_path + ".tmp", stats_path)
            await asyncio.sleep(0.2)


def read_stats(path: str, after: float) -> dict[str, float]:
    while True:
        try:
            with open(path) as f:
                stats: dict[str, float] = json.load(f)
            if stats["at"] > after:
                return stats
        except (OSError, ValueError):
            pass
        time.sleep(0.05)


async def drive(n: int) -> dict[str, float]:
    with temp_sqlite_url() as (url, path):
        stats_path = path + ".stats"
        app = make_app(url)
        await app._open()  # create the schema before the worker process opens it
        worker = subprocess.Popen([sys.executable, __file__, "--worker", url, stats_path])
        try:
            warm = [await app.start("parked", {"key": f"warm-{i}"}) for i in range(100)]
            while await asyncio.to_thread(count_status, path, "waiting") < len(warm):
                await asyncio.sleep(0.05)
            for i in range(len(warm)):
                await app.send_signal(f"warm-{i}", {})
            while await asyncio.to_thread(count_status, path, "completed") < len(warm):
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            before = read_stats(stats_path, time.time())
            started = time.perf_counter()
            for chunk in range(0, n, 1000):
                await asyncio.gather(
                    *(app.start("parked", {"key": f"k-{i}"}) for i in range(chunk, chunk + 1000))
                )
            while await asyncio.to_thread(count_status, path, "waiting") < n:
                await asyncio.sleep(0.05)
            parking = time.perf_counter() - started
            await asyncio.sleep(1.0)
            after = read_stats(stats_path, time.time())
        finally:
            worker.terminate()
            worker.wait(10)
        await app.close()
    return {
        "n": n,
        "park_rate": n / parking,
        "rss_before_mb": before["rss_mb"],
        "rss_after_mb": after["rss_mb"],
        "rss_growth_mb": after["rss_mb"] - before["rss_mb"],
        "threads_before": before["threads"],
        "threads_after": after["threads"],
        "tasks_before": before["tasks"],
        "tasks_after": after["tasks"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--worker", nargs=2, metavar=("URL", "STATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker_main(*args.worker))
        return
    r = asyncio.run(drive(args.n))
    print_table(
        ["parked", "park rate/s", "worker RSS 0 -> N MB", "growth MB", "threads", "tasks"],
        [[r["n"], f"{r['park_rate']:.0f}",
          f"{r['rss_before_mb']:.1f} -> {r['rss_after_mb']:.1f}", f"{r['rss_growth_mb']:.1f}",
          f"{r['threads_before']:.0f} -> {r['threads_after']:.0f}",
          f"{r['tasks_before']:.0f} -> {r['tasks_after']:.0f}"]],
    )  # fmt: skip
    print("targets: growth <= 20 MB, threads flat, park rate >= 2,000 runs/s")
    write_json("parked", {"benchmark": "parked", "machine": machine_info(), **r})


if __name__ == "__main__":
    main()
