"""What Prometheus metrics cost a worker: throughput.py's runs with metrics off and on.

Each sample is a fresh process (the engine's listener is process-wide, so an "off"
sample must never follow an "on" one in the same process) running throughput.py's
concurrent scenario: a worker running while N runs of a 3-step workflow are
started, end to end. "on" is what ``tarry serve`` does: ``tarry.metrics.collector``
made (every lifecycle moment counted, every store operation timed) and ``/metrics``
rendered once a second (its store reads included; the first rendering, which
imports the exposition code, is done before the clock starts, as a server does it
at its first scrape), against "off": no collector,
the engine telling no one. Samples alternate off/on, then on/off (ABBA), so drift
in the machine's load falls on both.

    .venv/bin/python bench/metrics_overhead.py [--rounds 6] [--n 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tarry
from _common import EndCounter, count_status, machine_info, median, print_table, temp_sqlite_url
from throughput import make_app, start_all

SCRAPE_EVERY = 1.0
"""Seconds between renderings of ``/metrics`` (``--scrape-every``); Prometheus's default
is 15 s, so this is 15 times its reads."""


PARTS = ("off", "idle-listener", "listener", "timer", "collector", "on")
"""``--parts``: off; a listener that does nothing (what the engine's moments cost once
anyone listens); the metrics' listener alone; the store timer alone; both (a collector
made, never rendered); all of it, with
the scrapes of ``--scrape-every``, as in the main comparison."""


def _part(app: tarry.App, part: str) -> None:
    import tarry.metrics
    from tarry import observe
    from tarry.metrics.engine import engine_metrics

    if part == "idle-listener":
        observe.add_listener(lambda moment: None)
        return
    tarry.metrics.collector(app, time_store=part != "listener")  # collector: both
    if part == "timer":
        observe.remove_listener(engine_metrics().listen)


async def one(
    variant: str, metrics: str, n: int, chunk: int, concurrency: int, every: float
) -> tuple[float, float]:
    """End-to-end runs/s of one sample, and the process's CPU microseconds per run
    over the same span (every thread: the loop, the writer, the step threads).
    ``metrics``: off, on, or one of ``PARTS``."""
    with temp_sqlite_url() as (url, path):
        app = make_app(url, variant)
        counter = EndCounter(app, path)
        await app._open()
        scrapes = 0
        scraper: asyncio.Task[None] | None = None
        if metrics in PARTS[1:5]:
            _part(app, metrics)
        elif metrics == "on":
            import tarry.metrics

            collector = tarry.metrics.collector(app)
            await collector.exposition()  # its imports and first read, as a server's start

            async def scrape() -> None:
                nonlocal scrapes
                while True:
                    await collector.exposition()
                    scrapes += 1
                    await asyncio.sleep(every)

            scraper = asyncio.create_task(scrape())
        async with app.worker(concurrency=concurrency):
            await asyncio.sleep(0.05)
            t0, cpu0 = time.perf_counter(), time.process_time()
            await start_all(app, n, chunk)
            t_end = await counter.wait_for(n)
            cpu = time.process_time() - cpu0
        if scraper is not None:
            scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scraper
            assert scrapes > 0
        await app.close()
        done = count_status(path, "completed")
        if done != n:
            raise RuntimeError(f"{done}/{n} runs completed")
        return n / (t_end - t0), cpu / n * 1e6


def sample(variant: str, metrics: str, args: argparse.Namespace) -> tuple[float, float]:
    command = [sys.executable, __file__, "--one", variant, metrics,
               "--n", str(args.n), "--chunk", str(args.chunk),
               "--concurrency", str(args.concurrency),
               "--scrape-every", str(args.scrape_every)]  # fmt: skip
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    found = json.loads(out.strip().splitlines()[-1])
    return float(found["rate"]), float(found["cpu_us"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6, help="off/on pairs per variant")
    parser.add_argument("--n", type=int, default=5000, help="runs per sample")
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--variant", choices=["async-steps", "sync-steps"], action="append")
    parser.add_argument("--scrape-every", type=float, default=SCRAPE_EVERY, help="seconds")
    parser.add_argument("--parts", action="store_true", help="each part of the cost alone")
    parser.add_argument("--one", nargs=2, metavar=("VARIANT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        variant, mode = args.one
        rate, cpu_us = asyncio.run(
            one(variant, mode, args.n, args.chunk, args.concurrency, args.scrape_every)
        )
        print(json.dumps({"rate": rate, "cpu_us": cpu_us}))
        return

    if args.parts:
        parts(args)
        return
    rows = []
    for variant in args.variant or ["async-steps", "sync-steps"]:
        rates: dict[bool, list[float]] = {False: [], True: []}
        cpus: dict[bool, list[float]] = {False: [], True: []}
        for round_ in range(args.rounds):
            order = (False, True) if round_ % 2 == 0 else (True, False)
            for metrics in order:
                rate, cpu_us = sample(variant, "on" if metrics else "off", args)
                rates[metrics].append(rate)
                cpus[metrics].append(cpu_us)
                label = "on " if metrics else "off"
                print(f"  {variant:12} round {round_ + 1} metrics {label}: {rate:,.0f} runs/s, "
                      f"{cpu_us:,.0f} us CPU/run", file=sys.stderr)  # fmt: skip
        off, on = median(rates[False]), median(rates[True])
        cpu_off, cpu_on = median(cpus[False]), median(cpus[True])
        rows.append([variant, f"{off:,.0f}", f"{on:,.0f}", f"{on / off:.3f}",
                     f"{cpu_off:,.0f}", f"{cpu_on:,.0f}", f"{cpu_off / cpu_on:.3f}"])  # fmt: skip
    load = os.getloadavg()
    print(
        f"\nmetrics overhead: {args.n:,} runs x 3 steps, SQLite, concurrent start, worker "
        f"concurrency {args.concurrency}, median of {args.rounds} per side (ABBA), "
        f"/metrics rendered every {args.scrape_every:g} s when on"
    )
    print_table(
        ["steps", "off runs/s", "on runs/s", "on / off", "off us CPU/run", "on us CPU/run",
         "off / on"],
        rows,
    )  # fmt: skip
    info: dict[str, Any] = machine_info()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {info}")


def parts(args: argparse.Namespace) -> None:
    """Each part alone, in turn, round after round (reversed every other round)."""
    for variant in args.variant or ["async-steps"]:
        rates: dict[str, list[float]] = {part: [] for part in PARTS}
        for round_ in range(args.rounds):
            for part in PARTS if round_ % 2 == 0 else PARTS[::-1]:
                rates[part].append(sample(variant, part, args)[0])
        off = median(rates["off"])
        rows = [[variant, part, f"{median(rates[part]):,.0f}", f"{median(rates[part]) / off:.3f}"]
                for part in PARTS]  # fmt: skip
        print_table(["steps", "part", "runs/s", "vs off"], rows)


if __name__ == "__main__":
    main()
