"""Worker concurrency: runs/s of a 3-step workflow at several ``concurrency`` values,
on SQLite and on PostgreSQL, with async and with sync step functions.

One process: N runs are started with no worker (untimed), then one worker with
the given concurrency drains them; runs/s = N / (worker start -> last run ended).
A fresh SQLite file in a temp dir, or a fresh PostgreSQL schema (dropped after),
for every point. Points are interleaved over the concurrency values within each
repetition, so a drift in the machine's load spreads over all of them.

    .venv/bin/python bench/concurrency.py [--runs 3] [--stores sqlite,postgres]
        [--levels 8,32,64,128,256,1000] [--n-sqlite 5000] [--n-postgres 4000]
        [--pg postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tarry
from _common import EndCounter, machine_info, median, print_table, temp_sqlite_url, write_json

DEFAULT_PG = os.environ.get("TARRY_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def inc_async(x: int) -> int:
    return x + 1


def inc_sync(x: int) -> int:
    return x + 1


def make_app(url: str, steps: str) -> tarry.App:
    app = tarry.App(url)
    inc: Any = inc_async if steps == "async" else inc_sync

    @app.workflow("three")
    async def three(ctx: tarry.Context, step: tarry.Step) -> int:
        v = await step.run("a", inc, 0)
        v = await step.run("b", inc, v)
        return int(await step.run("c", inc, v))

    return app


async def drain(url: str, path: str, steps: str, n: int, concurrency: int) -> float:
    app = make_app(url, steps)
    counter = EndCounter(app, path)
    await app._open()
    for lo in range(0, n, 500):
        await asyncio.gather(*(app.start("three", {"i": i}) for i in range(lo, min(n, lo + 500))))
    async with app.worker(concurrency=concurrency):
        t0 = time.perf_counter()
        give_up = time.monotonic() + 600
        while counter.ended < n:  # the in-process hook: the same for both stores
            if time.monotonic() > give_up:
                raise TimeoutError(f"only {counter.ended}/{n} runs ended")
            await asyncio.sleep(0.005)
        assert counter.last_end is not None
        t_end = counter.last_end
    await app.close()
    return n / (t_end - t0)


def point(store: str, steps: str, n: int, concurrency: int, pg: str) -> float:
    if store == "sqlite":
        with temp_sqlite_url() as (url, path):
            return asyncio.run(drain(url, path, steps, n, concurrency))
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in pg else "?"
    try:
        return asyncio.run(drain(f"{pg}{sep}schema={schema}", "", steps, n, concurrency))
    finally:
        with psycopg.connect(pg.partition("?")[0], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions; the median is reported")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--steps", default="async,sync")
    parser.add_argument("--levels", default="8,32,64,128,256,1000")
    parser.add_argument("--n-sqlite", type=int, default=5000)
    parser.add_argument("--n-postgres", type=int, default=4000)
    parser.add_argument("--pg", default=DEFAULT_PG)
    args = parser.parse_args()
    stores = args.stores.split(",")
    kinds = args.steps.split(",")
    levels = [int(v) for v in args.levels.split(",")]

    rates: dict[tuple[str, str, int], list[float]] = {}
    for rep in range(args.runs):
        for store in stores:
            n = args.n_sqlite if store == "sqlite" else args.n_postgres
            for steps in kinds:
                for level in levels:
                    rate = point(store, steps, n, level, args.pg)
                    rates.setdefault((store, steps, level), []).append(rate)
                    print(
                        f"  rep {rep + 1} {store:8} {steps:5} concurrency {level:5}: "
                        f"{rate:,.0f} runs/s  (load {os.getloadavg()[0]:.2f})",
                        file=sys.stderr,
                    )

    rows = []
    results = []
    for store in stores:
        for steps in kinds:
            row: list[Any] = [f"{store} {steps} steps"]
            for level in levels:
                value = median(rates[(store, steps, level)])
                row.append(f"{value:,.0f}")
                results.append(
                    {
                        "store": store,
                        "steps": steps,
                        "concurrency": level,
                        "runs_per_s": value,
                        "samples": rates[(store, steps, level)],
                    }
                )
            rows.append(row)
    print(f"\nruns/s by worker concurrency (median of {args.runs}), 3-step workflow, one process")
    print_table(["store, steps"] + [str(level) for level in levels], rows)
    path = write_json(
        "concurrency",
        {
            "benchmark": "concurrency",
            "params": vars(args),
            "machine": machine_info(),
            "results": results,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
