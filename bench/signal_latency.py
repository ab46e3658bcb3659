"""Signal round trip: from just before ``await app.send_signal(...)`` to the line after
``await step.wait_for_signal(...)`` running in the resumed handler.

One process, one event loop (client and worker share it), SQLite file store in a
temp dir with default settings (synchronous=FULL). Round trips are sequential;
before each one the benchmark waits (outside the timed region) until the run is
parked on that exact key, so every signal is *delivered* to a waiter, never buffered.

Modes:
  per-run  one run per round trip: the run parks on one wait, is signalled, ends.
  loop     one run loops over ``--loop-len`` waits with distinct keys; each
           resume replays the run's earlier waits from the memo.

Also reported: ``send`` = how long ``send_signal`` itself takes to return.

    .venv/bin/python bench/signal_latency.py [--runs 3] [--n 1000]
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

TARGET_P50_MS = 3.0
TARGET_P99_MS = 15.0

# key -> future resolved by the handler with time.perf_counter() right after its wait returns
_arrived: dict[str, asyncio.Future[float]] = {}


def _mark(key: str) -> None:
    now = time.perf_counter()
    fut = _arrived.get(key)
    if fut is not None and not fut.done():
        fut.set_result(now)


def make_app(url: str) -> tarry.App:
    app = tarry.App(database=url)

    @app.workflow("one-wait")
    async def one_wait(ctx: tarry.Context, step: tarry.Step) -> None:
        key = ctx.payload["key"]
        await step.wait_for_signal("wait", signal=key, timeout=None)
        _mark(key)

    @app.workflow("loop-waits")
    async def loop_waits(ctx: tarry.Context, step: tarry.Step) -> None:
        prefix, count = ctx.payload["prefix"], ctx.payload["count"]
        for i in range(count):
            key = f"{prefix}-{i}"
            await step.wait_for_signal("wait", signal=key, timeout=None)  # keyed wait, wait:1, ...
            _mark(key)  # a no-op on replay: the future is already done

    return app


async def parked_on(app: tarry.App, run_id: str, key: str) -> None:
    """Poll until the run is parked on ``key`` (outside the timed region)."""
    for _ in range(100_000):
        run = await app.get_run(run_id)
        if run.status == "waiting" and run.waiting_for is not None and run.waiting_for.key == key:
            return
        if run.status in ("completed", "failed", "cancelled"):
            raise RuntimeError(f"run {run_id} ended as {run.status}: {run.error}")
        await asyncio.sleep(0.0005)
    raise TimeoutError(f"run {run_id} never parked on {key!r}")


async def round_trip(app: tarry.App, run_id: str, key: str) -> tuple[float, float]:
    await parked_on(app, run_id, key)
    await asyncio.sleep(0.002)  # let the worker settle into its idle wait
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[float] = loop.create_future()
    _arrived[key] = fut
    t0 = time.perf_counter()
    result = await app.send_signal(key, {"n": 1})
    t_sent = time.perf_counter()
    t_arrived = await asyncio.wait_for(fut, 30.0)
    if result.status != "delivered":
        raise RuntimeError(f"signal {key!r} was {result.status}, expected delivered")
    del _arrived[key]
    return (t_arrived - t0) * 1000, (t_sent - t0) * 1000


async def measure(mode: str, n: int, loop_len: int, rep: int) -> dict[str, list[float]]:
    latencies: list[float] = []
    sends: list[float] = []
    with temp_sqlite_url() as (url, _path):
        app = make_app(url)
        async with app.worker():
            if mode == "per-run":
                for i in range(n):
                    key = f"sig-{rep}-{i}"
                    run_id = await app.start("one-wait", {"key": key})
                    total, send = await round_trip(app, run_id, key)
                    latencies.append(total)
                    sends.append(send)
            else:
                done = 0
                r = 0
                while done < n:
                    count = min(loop_len, n - done)
                    prefix = f"loop-{rep}-{r}"
                    run_id = await app.start("loop-waits", {"prefix": prefix, "count": count})
                    for i in range(count):
                        total, send = await round_trip(app, run_id, f"{prefix}-{i}")
                        latencies.append(total)
                        sends.append(send)
                    done += count
                    r += 1
        await app.close()
    return {"latency_ms": latencies, "send_ms": sends}


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))  # nearest rank
    return s[k]


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "p99": pct(values, 99),
        "max": max(values),
        "mean": sum(values) / len(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions; the median is reported")
    parser.add_argument("--n", type=int, default=1000, help="round trips per repetition")
    parser.add_argument("--loop-len", type=int, default=100, help="waits per run in loop mode")
    parser.add_argument(
        "--mode", choices=["per-run", "loop", "both"], default="both", help="what to measure"
    )
    args = parser.parse_args()
    modes = ["per-run", "loop"] if args.mode == "both" else [args.mode]

    results: list[dict[str, Any]] = []
    for mode in modes:
        reps: list[dict[str, Any]] = []
        for rep in range(args.runs):
            raw = asyncio.run(measure(mode, args.n, args.loop_len, rep))
            summary = {
                "latency_ms": summarize(raw["latency_ms"]),
                "send_ms": summarize(raw["send_ms"]),
            }
            reps.append(summary)
            lat = summary["latency_ms"]
            print(
                f"  {mode:8} rep {rep + 1}: p50={lat['p50']:.2f} p90={lat['p90']:.2f} "
                f"p99={lat['p99']:.2f} max={lat['max']:.2f} ms "
                f"(send p50={summary['send_ms']['p50']:.2f} ms)",
                file=sys.stderr,
            )
        med = median_summaries(reps, ("latency_ms", "send_ms"))
        results.append({"mode": mode, "median": med, "samples": reps})

    rows = []
    for r in results:
        lat, send = r["median"]["latency_ms"], r["median"]["send_ms"]
        ok = lat["p50"] <= TARGET_P50_MS and lat["p99"] <= TARGET_P99_MS
        rows.append(
            [
                r["mode"],
                f"{lat['p50']:.2f}",
                f"{lat['p90']:.2f}",
                f"{lat['p99']:.2f}",
                f"{lat['max']:.2f}",
                f"{send['p50']:.2f}",
                "yes" if ok else "NO",
            ]
        )
    print(
        f"\nsignal round trip (ms): {args.n:,} sequential round trips, SQLite (synchronous=FULL), "
        f"median of {args.runs} repetitions per percentile"
    )
    print_table(
        [
            "mode",
            "p50",
            "p90",
            "p99",
            "max",
            "send p50",
            f"p50<={TARGET_P50_MS:g} & p99<={TARGET_P99_MS:g}",
        ],
        rows,
    )
    path = write_json(
        "signal_latency",
        {
            "benchmark": "signal_latency",
            "params": vars(args),
            "targets_ms": {"p50": TARGET_P50_MS, "p99": TARGET_P99_MS},
            "machine": machine_info(),
            "results": results,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
