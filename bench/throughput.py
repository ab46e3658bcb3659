"""Throughput: N runs of a 3-step workflow, one process, SQLite file store (defaults).

Scenarios (each on a fresh database in a temp dir):

  backlog     start all N runs with no worker running (asyncio.gather in chunks),
              then start a worker and let it drain them. Reports the start rate,
              the execution rate (worker start -> last run completed) and the
              end-to-end rate (first start -> last completion).
  concurrent  a worker is running while the N runs are started (gather in chunks);
              reports end to end, first start -> last completion.

Each scenario runs with async step functions and with sync step functions (run
in a thread by ``step.run``); ``--sync-handler`` adds a plain ``def`` handler.

    .venv/bin/python bench/throughput.py [--runs 3] [--n 10000]
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
from _common import (
    EndCounter,
    count_status,
    machine_info,
    median,
    print_table,
    temp_sqlite_url,
    write_json,
)

TARGET = 1000.0  # runs/s


async def inc_async(x: int) -> int:
    return x + 1


def inc_sync(x: int) -> int:
    return x + 1


def make_app(url: str, variant: str) -> tarry.App:
    app = tarry.App(database=url)
    if variant == "async-steps":

        @app.workflow("three")
        async def three(ctx: tarry.Context, step: tarry.Step) -> int:
            v = await step.run("a", inc_async, 0)
            v = await step.run("b", inc_async, v)
            return await step.run("c", inc_async, v)

    elif variant == "sync-steps":

        @app.workflow("three")
        async def three_sync_steps(ctx: tarry.Context, step: tarry.Step) -> int:
            v = await step.run("a", inc_sync, 0)
            v = await step.run("b", inc_sync, v)
            return await step.run("c", inc_sync, v)

    elif variant == "sync-handler":

        @app.workflow("three")
        def three_sync_handler(ctx: tarry.Context, step: Any) -> int:
            v = step.run("a", inc_sync, 0)
            v = step.run("b", inc_sync, v)
            return step.run("c", inc_sync, v)

    else:
        raise ValueError(variant)
    return app


async def start_all(app: tarry.App, n: int, chunk: int) -> list[str]:
    ids: list[str] = []
    for lo in range(0, n, chunk):
        ids += await asyncio.gather(
            *(app.start("three", {"i": i}) for i in range(lo, min(n, lo + chunk)))
        )
    return ids


async def backlog(variant: str, n: int, chunk: int, concurrency: int) -> dict[str, float]:
    with temp_sqlite_url() as (url, path):
        app = make_app(url, variant)
        counter = EndCounter(app, path)
        await app._open()  # open (migrate) outside the timed region
        t0 = time.perf_counter()
        await start_all(app, n, chunk)
        t1 = time.perf_counter()
        async with app.worker(concurrency=concurrency):
            t2 = time.perf_counter()
            t_end = await counter.wait_for(n)
        await app.close()
        done = count_status(path, "completed")
        if done != n:
            raise RuntimeError(f"{done}/{n} runs completed")
        return {
            "start_rate": n / (t1 - t0),
            "exec_rate": n / (t_end - t2),
            "end_to_end_rate": n / (t_end - t0),
            "start_seconds": t1 - t0,
            "exec_seconds": t_end - t2,
        }


async def concurrent(variant: str, n: int, chunk: int, concurrency: int) -> dict[str, float]:
    with temp_sqlite_url() as (url, path):
        app = make_app(url, variant)
        counter = EndCounter(app, path)
        await app._open()
        async with app.worker(concurrency=concurrency):
            await asyncio.sleep(0.05)  # let the worker reach its idle wait
            t0 = time.perf_counter()
            await start_all(app, n, chunk)
            t1 = time.perf_counter()
            t_end = await counter.wait_for(n)
        await app.close()
        done = count_status(path, "completed")
        if done != n:
            raise RuntimeError(f"{done}/{n} runs completed")
        return {
            "start_rate": n / (t1 - t0),
            "end_to_end_rate": n / (t_end - t0),
            "start_seconds": t1 - t0,
            "end_to_end_seconds": t_end - t0,
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions; the median is reported")
    parser.add_argument("--n", type=int, default=10_000, help="workflow runs per repetition")
    parser.add_argument("--chunk", type=int, default=1000, help="starts per asyncio.gather")
    parser.add_argument("--concurrency", type=int, default=32, help="worker concurrency")
    parser.add_argument("--sync-handler", action="store_true", help="add a plain-def handler row")
    parser.add_argument(
        "--only", choices=["backlog", "concurrent"], default=None, help="run one scenario"
    )
    parser.add_argument(
        "--variant",
        choices=["async-steps", "sync-steps", "sync-handler"],
        default=None,
        help="run one kind of steps only",
    )
    args = parser.parse_args()

    variants = ["async-steps", "sync-steps"] + (["sync-handler"] if args.sync_handler else [])
    if args.variant:
        variants = [args.variant]
    scenarios = {"backlog": backlog, "concurrent": concurrent}
    if args.only:
        scenarios = {args.only: scenarios[args.only]}

    results: list[dict[str, Any]] = []
    for variant in variants:
        for name, fn in scenarios.items():
            samples: list[dict[str, float]] = []
            for rep in range(args.runs):
                sample = asyncio.run(fn(variant, args.n, args.chunk, args.concurrency))
                samples.append(sample)
                print(
                    f"  {variant:13} {name:10} rep {rep + 1}: "
                    + ", ".join(
                        f"{k}={v:,.3f}" if k.endswith("seconds") else f"{k}={v:,.0f}"
                        for k, v in sample.items()
                    ),
                    file=sys.stderr,
                )
            med = {k: median([s[k] for s in samples]) for k in samples[0]}
            results.append(
                {"variant": variant, "scenario": name, "median": med, "samples": samples}
            )

    rows = []
    for r in results:
        m = r["median"]
        rows.append(
            [
                r["variant"],
                r["scenario"],
                f"{m['start_rate']:,.0f}",
                f"{m['exec_rate']:,.0f}" if "exec_rate" in m else "-",
                f"{m['end_to_end_rate']:,.0f}",
                "yes" if m["end_to_end_rate"] >= TARGET else "NO",
            ]
        )
    print(
        f"\nthroughput: {args.n:,} runs x 3 steps, SQLite (synchronous=FULL), "
        f"worker concurrency {args.concurrency}, median of {args.runs}"
    )
    print_table(
        [
            "steps",
            "scenario",
            "start runs/s",
            "exec runs/s",
            "end-to-end runs/s",
            f">= {TARGET:.0f}",
        ],
        rows,
    )
    path = write_json(
        "throughput",
        {
            "benchmark": "throughput",
            "params": vars(args),
            "target_runs_per_s": TARGET,
            "machine": machine_info(),
            "results": results,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
