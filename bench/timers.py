"""Timers: 10,000 sleeps due at the same instant, and a lone timer's lateness.

burst  10,000 runs park on ``step.sleep_until(T)`` with the same T; each records the
       wall-clock time on the line after the sleep. Reported: how long after T the
       last one resumed (target: all within 3 s) and the lateness percentiles.
lone   200 sequential runs, each sleeping 50 ms alone; lateness of the line after
       the sleep against its due time (target: p99 <= 50 ms).

    .venv/bin/python bench/timers.py [--burst 10000] [--lone 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tarry
from _common import machine_info, print_table, temp_sqlite_url, write_json


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def burst(n: int) -> dict[str, float]:
    woke: dict[str, float] = {}
    with temp_sqlite_url() as (url, _path):
        app = tarry.App(url)

        @app.workflow("alarm")
        async def alarm(ctx: tarry.Context, step: tarry.Step) -> None:
            await step.sleep_until("at", datetime.fromtimestamp(ctx.payload["at"], UTC))
            woke[ctx.run_id] = time.time()

        async with app.worker(concurrency=256):
            due = time.time() + 15 + n / 2000  # time enough to park them all first
            for chunk in range(0, n, 1000):
                await asyncio.gather(
                    *(app.start("alarm", {"at": due}) for _ in range(min(1000, n - chunk)))
                )
            while len(woke) < n:
                await asyncio.sleep(0.05)
                if time.time() > due + 60:
                    raise TimeoutError(f"only {len(woke)}/{n} timers fired")
        await app.close()
    late = [(t - due) * 1000 for t in woke.values()]
    return {"n": n, "all_resumed_s": max(late) / 1000, "p50_ms": pct(late, 50),
            "p99_ms": pct(late, 99), "min_ms": min(late)}  # fmt: skip


async def lone(n: int) -> dict[str, float]:
    late: list[float] = []
    with temp_sqlite_url() as (url, _path):
        app = tarry.App(url)

        @app.workflow("nap")
        async def nap(ctx: tarry.Context, step: tarry.Step) -> None:
            await step.sleep_until("at", datetime.fromtimestamp(ctx.payload["at"], UTC))
            late.append((time.time() - ctx.payload["at"]) * 1000)

        async with app.worker():
            for _ in range(n):
                before = len(late)
                await app.start("nap", {"at": time.time() + 0.05})
                while len(late) == before:
                    await asyncio.sleep(0.005)
        await app.close()
    return {"n": n, "p50_ms": pct(late, 50), "p99_ms": pct(late, 99), "max_ms": max(late)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--lone", type=int, default=200)
    args = parser.parse_args()
    b = await burst(args.burst)
    one = await lone(args.lone)
    print_table(
        ["scenario", "timers", "p50 late ms", "p99 late ms", "last resumed after", "target"],
        [
            ["same instant", b["n"], f"{b['p50_ms']:.1f}", f"{b['p99_ms']:.1f}",
             f"{b['all_resumed_s']:.2f} s", "all within 3 s"],
            ["lone timer", one["n"], f"{one['p50_ms']:.1f}", f"{one['p99_ms']:.1f}",
             f"{one['max_ms'] / 1000:.3f} s", "p99 <= 50 ms"],
        ],
    )  # fmt: skip
    write_json(
        "timers", {"benchmark": "timers", "machine": machine_info(), "burst": b, "lone": one}
    )


if __name__ == "__main__":
    asyncio.run(main())
