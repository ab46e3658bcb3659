"""One event for many waiters on SQLite: N runs park (through the worker) on
``wait_for_event(match="data.group")`` with one group, then one event matches all of
them. Times ``send_event`` and its return -> all N ended, the worker in-process.
The PostgreSQL form is ``pg_scale.py fanout``.

    .venv/bin/python bench/fanout.py [--n 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tarry
from _common import count_status, machine_info, print_table, temp_sqlite_url, write_json


async def measure(n: int) -> dict[str, float]:
    with temp_sqlite_url() as (url, path):
        app = tarry.App(url)

        @app.workflow("fan")
        async def fan(ctx: tarry.Context, step: tarry.Step) -> None:
            await step.wait_for_event("wait", event="app/fan", match="data.group", timeout=None)

        async with app.worker(concurrency=256):
            for chunk in range(0, n, 1000):
                await asyncio.gather(
                    *(app.start("fan", {"group": 1}) for _ in range(chunk, min(n, chunk + 1000)))
                )
            while await asyncio.to_thread(count_status, path, "waiting") < n:
                await asyncio.sleep(0.02)
            t0 = time.perf_counter()
            sent = await app.send_event("app/fan", {"group": 1})
            t1 = time.perf_counter()
            assert len(sent.resumed) == n, len(sent.resumed)
            while await asyncio.to_thread(count_status, path, "completed") < n:
                await asyncio.sleep(0.01)
            t2 = time.perf_counter()
        await app.close()
    return {"send_event_s": t1 - t0, "resumed_to_ended_s": t2 - t1}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs = [await measure(args.n) for _ in range(args.rounds)]
    med: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print_table(
        ["waiters", "send_event s", "then all ended s"],
        [[args.n, f"{med['send_event_s']:.3f}", f"{med['resumed_to_ended_s']:.3f}"]],
    )
    write_json("fanout", {"benchmark": "fanout", "machine": machine_info(), "n": args.n,
                          "median": med, "runs": runs})  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
