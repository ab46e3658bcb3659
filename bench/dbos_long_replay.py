"""DBOS side of long_replay.py: a workflow with 1,000 completed steps, resumed.

One process, SQLite system database in a temp dir, DBOS defaults. The workflow runs
N ``@DBOS.step`` calls, then waits in ``DBOS.recv_async`` and records the time on the
line after it.

A DBOS workflow parked in ``recv`` is still running in memory: a message resumes it
without replaying anything (``in-memory``: send -> line after recv). DBOS replays
recorded steps only when a workflow is re-executed - recovery after a crash, or a
fork. The closest equivalent of tarry's resume (a fresh execution replaying N
memoized steps and the completed wait) is measured with ``DBOS.fork_workflow``
from the step after the completed ``recv``: DBOS copies the N + 1 recorded step
outputs to a new workflow and runs it, each step answering from the copied
records, until the line after the (replayed) ``recv``:

  fork     ``fork_workflow_async`` called -> line after recv (includes the forked
           workflow waiting for DBOS's internal queue, polled once a second)
  replay   the forked workflow's first line -> line after recv (the replay alone)

    /tmp/dbosvenv/bin/python bench/dbos_long_replay.py [--steps 1000] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dbos import DBOS

from _common import print_table
from _dbos_common import config, finish, temp_sqlite

entered: dict[str, float] = {}
arrived: dict[str, float] = {}
parked: set[str] = set()


@DBOS.step()
async def one(i: int) -> int:
    return i


@DBOS.workflow(name="long")
async def long(steps: int) -> None:
    wf_id = DBOS.workflow_id
    assert wf_id is not None
    entered[wf_id] = time.perf_counter()
    for i in range(steps):
        await one(i)
    parked.add(wf_id)
    await DBOS.recv_async("gate", timeout_seconds=3600)
    arrived[wf_id] = time.perf_counter()


async def until(cond: dict[str, float] | set[str], key: str, timeout: float = 120) -> None:
    give_up = time.monotonic() + timeout
    while key not in cond:
        if time.monotonic() > give_up:
            raise TimeoutError(key)
        await asyncio.sleep(0.0002)


async def measure(steps: int, repeat: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"in_memory": [], "fork": [], "replay": []}
    for _ in range(repeat):
        handle = await DBOS.start_workflow_async(long, steps)
        wf_id = handle.get_workflow_id()
        await until(parked, wf_id)
        await asyncio.sleep(0.05)  # let recv_async register its wait
        t0 = time.perf_counter()
        await DBOS.send_async(wf_id, {}, "gate")
        await until(arrived, wf_id)
        out["in_memory"].append((arrived[wf_id] - t0) * 1000)
        await handle.get_result()
        recorded = await DBOS.list_workflow_steps_async(wf_id)
        start_step = max(s["function_id"] for s in recorded) + 1
        t0 = time.perf_counter()
        forked = await DBOS.fork_workflow_async(wf_id, start_step)
        new_id = forked.get_workflow_id()
        await until(arrived, new_id)
        out["fork"].append((arrived[new_id] - t0) * 1000)
        out["replay"].append((arrived[new_id] - entered[new_id]) * 1000)
        await forked.get_result()
        print(f"  in-memory {out['in_memory'][-1]:.1f} ms, fork {out['fork'][-1]:.1f} ms, "
              f"replay {out['replay'][-1]:.1f} ms", file=sys.stderr)  # fmt: skip
    return out


async def run(steps: int, repeat: int) -> dict[str, list[float]]:
    with temp_sqlite() as url:
        DBOS(config=config(url))
        DBOS.launch()
        try:
            return await measure(steps, repeat)
        finally:
            DBOS.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    raw = asyncio.run(run(args.steps, args.repeat))
    res = {k: {"p50_ms": statistics.median(v), "max_ms": max(v), "samples": v}
           for k, v in raw.items()}  # fmt: skip
    if not args.json:
        print_table(
            ["completed steps", "measure", "p50 ms", "max ms"],
            [[args.steps, k, f"{r['p50_ms']:.1f}", f"{r['max_ms']:.1f}"] for k, r in res.items()],
        )
    finish("dbos_long_replay", args.json, {"params": vars(args), **res})


if __name__ == "__main__":
    main()
