"""Where a signal round trip's time goes (diagnostic for signal_latency.py).

Wraps the App's store methods from outside (nothing in src/ changes) and splits
each round trip into:
  send     send_signal called -> its store transaction returned (one commit)
  to-claim send_signal called -> the worker calls claim (the writer wakes the worker
           before it answers send_signal's caller, so this overlaps "send")
  claim    claim called -> returned (a second commit)
  replay   claim returned -> the handler's line after the wait runs

    .venv/bin/python bench/signal_phases.py [--n 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import signal_latency as sl
from _common import print_table, temp_sqlite_url

marks: dict[str, float] = {}


def wrap(store: Any, name: str) -> None:
    original = getattr(store, name)

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        marks[f"{name}_in"] = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            marks[f"{name}_out"] = time.perf_counter()

    setattr(store, name, wrapped)


async def measure(n: int) -> dict[str, list[float]]:
    phases: dict[str, list[float]] = {
        "send": [],
        "to-claim": [],
        "claim": [],
        "replay": [],
        "total": [],
    }
    with temp_sqlite_url() as (url, _path):
        app = sl.make_app(url)
        store = await app._open()
        for name in ("send_signal", "claim"):
            wrap(store, name)
        async with app.worker():
            for i in range(n):
                key = f"k-{i}"
                run_id = await app.start("one-wait", {"key": key})
                await sl.parked_on(app, run_id, key)
                await asyncio.sleep(0.002)
                fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                sl._arrived[key] = fut
                marks.clear()
                t0 = time.perf_counter()
                await app.send_signal(key, {"n": 1})
                t_end = await fut
                claim_in = marks.get("claim_in", float("nan"))
                phases["send"].append(marks["send_signal_out"] - t0)
                phases["to-claim"].append(claim_in - t0)
                phases["claim"].append(marks.get("claim_out", float("nan")) - claim_in)
                phases["replay"].append(t_end - marks.get("claim_out", float("nan")))
                phases["total"].append(t_end - t0)
        await app.close()
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    phases = asyncio.run(measure(args.n))
    rows = []
    for name, values in phases.items():
        ms = [v * 1000 for v in values if v == v]
        s = sl.summarize(ms)
        rows.append([name, *(f"{s[k]:.3f}" for k in ("mean", "p50", "p90", "p99", "max"))])
    print(f"signal round trip phases (ms), {args.n} round trips, per-run mode")
    print_table(["phase", "mean", "p50", "p90", "p99", "max"], rows)


if __name__ == "__main__":
    main()
