"""DBOS side of timers.py: ``DBOS.sleep_async`` due at the same instant; lone lateness.

One process, SQLite system database in a temp dir, DBOS defaults. A DBOS durable
sleep records its wake-up time in the database, then waits in memory
(``asyncio.sleep`` in the workflow's task), so the process holds every sleeping
workflow; after a restart, recovery re-runs the workflow and sleeps the remainder.

burst  N workflows sleep until the same wall-clock instant T (each computes
       ``T - time.time()`` and calls ``sleep_async``); each records ``time.time()`` on
       the line after the sleep. T is ``--lead`` seconds after the first start (by
       default 20 s + N / 100 s, time enough for DBOS to start them all). Reported: how
       long after T the last one resumed, and lateness percentiles.
lone   ``--lone`` sequential workflows, each sleeping 50 ms alone: lateness of the line
       after the sleep against its due time.

    /tmp/dbosvenv/bin/python bench/dbos_timers.py [--burst 10000] [--lone 200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dbos import DBOS

from _common import percentile, print_table
from _dbos_common import config, finish, temp_sqlite

woke: list[float] = []
late_parked: list[float] = []


@DBOS.workflow(name="alarm")
async def alarm(at: float) -> None:
    if time.time() > at:
        late_parked.append(at)
    await DBOS.sleep_async(at - time.time())
    woke.append(time.time())


async def burst(n: int, lead: float) -> dict[str, float]:
    woke.clear()
    due = time.time() + lead
    t0 = time.perf_counter()
    for lo in range(0, n, 1000):
        await asyncio.gather(
            *(DBOS.start_workflow_async(alarm, due) for _ in range(lo, min(n, lo + 1000)))
        )
    started = time.perf_counter() - t0
    print(f"  burst: {n} started in {started:.1f} s, due in {due - time.time():.1f} s",
          file=sys.stderr)  # fmt: skip
    while len(woke) < n:
        await asyncio.sleep(0.05)
        if time.time() > due + 600:
            raise TimeoutError(f"only {len(woke)}/{n} timers fired")
    late = [(t - due) * 1000 for t in woke]
    return {"n": n, "lead_s": lead, "start_seconds": started, "parked_after_due": len(late_parked),
            "all_resumed_s": max(late) / 1000, "p50_ms": percentile(late, 50),
            "p99_ms": percentile(late, 99), "min_ms": min(late)}  # fmt: skip


async def lone(n: int) -> dict[str, float]:
    late: list[float] = []
    for _ in range(n):
        woke.clear()
        at = time.time() + 0.05
        handle = await DBOS.start_workflow_async(alarm, at)
        await handle.get_result()
        late.append((woke[0] - at) * 1000)
    return {"n": n, "p50_ms": percentile(late, 50), "p99_ms": percentile(late, 99),
            "max_ms": max(late)}  # fmt: skip


async def run(n_burst: int, n_lone: int, lead: float) -> tuple[dict[str, float], dict[str, float]]:
    with temp_sqlite() as url:
        DBOS(config=config(url))
        DBOS.launch()
        try:
            b = await burst(n_burst, lead)
            one = await lone(n_lone)
        finally:
            DBOS.destroy()
    return b, one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--lone", type=int, default=200)
    parser.add_argument("--lead", type=float, default=None, help="seconds to the burst's due time")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    lead = args.lead if args.lead is not None else 20 + args.burst / 100
    b, one = asyncio.run(run(args.burst, args.lone, lead))
    if not args.json:
        print_table(
            ["scenario", "timers", "p50 late ms", "p99 late ms", "last resumed after"],
            [["same instant", b["n"], f"{b['p50_ms']:.1f}", f"{b['p99_ms']:.1f}",
              f"{b['all_resumed_s']:.2f} s"],
             ["lone timer", one["n"], f"{one['p50_ms']:.1f}", f"{one['p99_ms']:.1f}",
              f"{one['max_ms'] / 1000:.3f} s"]],
        )  # fmt: skip
    finish("dbos_timers", args.json, {"params": vars(args), "burst": b, "lone": one})


if __name__ == "__main__":
    main()
