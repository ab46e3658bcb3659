"""Resume a run with 1,000 completed steps: how long until it reaches its wait?

A run executes N steps and parks on a signal. The signal is sent; the time from
just before ``send_signal`` to the line after the wait (the whole replay of N
memoized steps included: one query loads all step records, each step answers
from the memo) is recorded. Target: <= 50 ms at N = 1,000.

    .venv/bin/python bench/long_replay.py [--steps 1000] [--repeat 20]
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
from _common import machine_info, print_table, temp_sqlite_url, write_json


async def measure(steps: int, repeat: int) -> list[float]:
    arrived: dict[str, float] = {}
    timings: list[float] = []
    with temp_sqlite_url() as (url, _path):
        app = tarry.App(url)

        @app.workflow("long")
        async def long(ctx: tarry.Context, step: tarry.Step) -> None:
            async def one(i: int) -> int:
                return i

            for i in range(ctx.payload["steps"]):
                await step.run("s", one, i)
            await step.wait_for_signal("gate", signal=ctx.run_id, timeout=None)
            arrived[ctx.run_id] = time.perf_counter()

        async with app.worker():
            for _ in range(repeat):
                run_id = await app.start("long", {"steps": steps})
                while (await app.get_run(run_id)).status != "waiting":
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.01)
                t0 = time.perf_counter()
                await app.send_signal(run_id, {})
                while run_id not in arrived:
                    await asyncio.sleep(0.0002)
                timings.append((arrived[run_id] - t0) * 1000)
        await app.close()
    return timings


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    timings = sorted(await measure(args.steps, args.repeat))
    p50 = statistics.median(timings)
    print_table(
        ["completed steps", "resume to wait p50 ms", "max ms", "target"],
        [[args.steps, f"{p50:.1f}", f"{timings[-1]:.1f}", "<= 50 ms"]],
    )
    write_json(
        "long_replay",
        {"benchmark": "long_replay", "machine": machine_info(), "steps": args.steps,
         "p50_ms": p50, "max_ms": timings[-1], "samples": timings},
    )  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
