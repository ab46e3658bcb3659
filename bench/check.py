"""``tarry check`` over many parked runs: how fast a deploy can be vetted.

Parks ``--runs`` runs (default 10,000), each with ``--steps`` stored steps (10)
before a wait on a signal, in a SQLite file; then replays all of them against
the same code with ``App.check`` (what ``tarry check`` runs), several times, and
reports runs checked per second. The target is at least 2,000 runs per second.

    .venv/bin/python bench/check.py [--runs 10000] [--steps 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tarry
from _common import count_status, temp_sqlite_url


def build(url: str, steps: int) -> tarry.App:
    app = tarry.App(url, version="bench")

    def work(n: int) -> dict[str, int]:
        return {"n": n, "total": n * 100}

    @app.workflow("parked")
    async def parked(ctx: tarry.Context, step: tarry.Step) -> object:
        for n in range(steps):
            await step.run(f"s{n}", work, n)
        return await step.wait_for_signal("wait", signal=f"go:{ctx.run_id}", timeout="30d")

    return app


async def park(app: tarry.App, path: str, runs: int) -> float:
    began = time.perf_counter()
    async with app.worker(concurrency=64):
        for start in range(0, runs, 1000):
            await asyncio.gather(*(app.start("parked") for _ in range(min(1000, runs - start))))
        while count_status(path, "waiting") < runs:
            await asyncio.sleep(0.2)
    return time.perf_counter() - began


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with temp_sqlite_url() as (url, path):
        app = build(url, args.steps)
        took = await park(app, path, args.runs)
        print(f"parked {args.runs:,} runs with {args.steps} steps each in {took:.1f} s")
        rates = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            report = await app.check()
            seconds = time.perf_counter() - began
            assert len(report.runs) == args.runs and report.passed(strict=True)
            rates.append(args.runs / seconds)
            print(f"checked {len(report.runs):,} runs in {seconds:.2f} s: {rates[-1]:,.0f} runs/s")
        await app.close()
    median = statistics.median(rates)
    verdict = "meets" if median >= 2000 else "MISSES"
    print(f"median {median:,.0f} runs/s over {args.repeat} passes ({verdict} the 2,000/s target)")


if __name__ == "__main__":
    asyncio.run(main())
