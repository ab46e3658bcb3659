"""Start latency: how long from ``app.start`` to the run's first step, and to its result.

One process, SQLite file store, a worker idle on the same loop; N runs of the
3-step workflow started one after another, each awaited to its end before the
next. ``first_step_ms``: from the call of ``app.start`` to the first step's
function running; ``latency_ms``: to ``app.result`` returning.

    .venv/bin/python bench/start_latency.py [--runs 3] [--n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tarry
from _common import machine_info, median_summaries, print_table, temp_sqlite_url, write_json
from signal_latency import summarize


async def measure(n: int) -> dict[str, list[float]]:
    began: list[float] = []

    async def first(x: int) -> int:
        began.append(time.perf_counter())
        return x + 1

    async def inc(x: int) -> int:
        return x + 1

    with temp_sqlite_url() as (url, _path):
        app = tarry.App(database=url)

        @app.workflow("three")
        async def three(ctx: tarry.Context, step: tarry.Step) -> int:
            v = await step.run("a", first, 0)
            v = await step.run("b", inc, v)
            return await step.run("c", inc, v)

        firsts: list[float] = []
        totals: list[float] = []
        async with app.worker():
            await asyncio.sleep(0.1)  # past the worker's first claim: it is idle
            for _ in range(n):
                sent = time.perf_counter()
                await app.result(await app.start("three"), timeout=30)
                totals.append((time.perf_counter() - sent) * 1000)
                firsts.append((began[-1] - sent) * 1000)
        await app.close()
    return {"first_step_ms": firsts, "latency_ms": totals}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions; the median is reported")
    parser.add_argument("--n", type=int, default=300, help="runs per repetition")
    args = parser.parse_args()

    reps: list[dict[str, Any]] = []
    for rep in range(args.runs):
        raw = asyncio.run(measure(args.n))
        summary = {what: summarize(values) for what, values in raw.items()}
        reps.append(summary)
        print(
            f"  rep {rep + 1}: first step p50={summary['first_step_ms']['p50']:.2f} ms, "
            f"result p50={summary['latency_ms']['p50']:.2f} ms",
            file=sys.stderr,
        )
    med = median_summaries(reps, ("first_step_ms", "latency_ms"))
    print(f"\nstart latency (ms): {args.n:,} sequential runs, median of {args.runs} repetitions")
    print_table(
        ["from app.start to", "p50", "p90", "p99"],
        [
            [label, *(f"{med[what][q]:.2f}" for q in ("p50", "p90", "p99"))]
            for label, what in (("first step", "first_step_ms"), ("result", "latency_ms"))
        ],
    )
    path = write_json(
        "start_latency",
        {
            "benchmark": "start_latency",
            "params": vars(args),
            "machine": machine_info(),
            "results": [{"median": med, "samples": reps}],
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
