"""Context for throughput.py: the same 3-step workload on DBOS Transact with SQLite.

Needs its own venv (DBOS is not a tarry dependency):

    python3 -m venv /tmp/dbosvenv && /tmp/dbosvenv/bin/pip install dbos
    /tmp/dbosvenv/bin/python bench/dbos_throughput.py [--runs 3] [--n 10000] [--json]
    /tmp/dbosvenv/bin/python bench/dbos_throughput.py --database postgresql://... \
        --processes 2 [--n 10000] [--json]

Scenario "concurrent": N workflows started with ``DBOS.start_workflow_async`` (gather in
chunks of 1000), then every handle awaited; end to end = first start -> last result.
Scenario "queue": N workflows enqueued on a ``Queue`` (concurrency 32 per process,
like tarry's worker, polled every 0.1 s) and drained by DBOS's own queue runner in
the same process.

With ``--database`` (PostgreSQL; a fresh database is created and dropped) and
``--processes N``: N worker processes launch DBOS with a default ``Queue`` and the
driver enqueues the N runs through ``DBOSClient.enqueue_async`` (gather in chunks of
500, as bench/postgres.py does for tarry); end to end = first enqueue -> the last run
``SUCCESS`` in ``dbos.workflow_status``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dbos import DBOS, DBOSConfig, Queue

from _common import machine_info, print_table, write_json
from _dbos_common import config, count_workflows, finish, system_database

TARGET = 1000.0


def setup(path: str, variant: str) -> tuple[Any, Queue]:
    config: DBOSConfig = {
        "name": "tarry-bench",
        "system_database_url": f"sqlite:///{path}",
        "run_admin_server": False,
    }
    DBOS(config=config)
    if variant == "async-steps":

        @DBOS.step()
        async def inc(x: int) -> int:
            return x + 1

        @DBOS.workflow()
        async def three(i: int) -> int:
            v = await inc(0)
            v = await inc(v)
            return await inc(v)

    else:

        @DBOS.step()
        def inc_sync(x: int) -> int:
            return x + 1

        @DBOS.workflow()
        def three(i: int) -> int:  # type: ignore[misc]
            v = inc_sync(0)
            v = inc_sync(v)
            return inc_sync(v)

    DBOS.launch()
    queue = DBOS.register_queue("bench", worker_concurrency=32, polling_interval_sec=0.1)
    return three, queue


async def concurrent(wf: Any, queue: Queue, n: int, chunk: int) -> dict[str, float]:
    t0 = time.perf_counter()
    handles: list[Any] = []
    for lo in range(0, n, chunk):
        handles += await asyncio.gather(
            *(DBOS.start_workflow_async(wf, i) for i in range(lo, min(n, lo + chunk)))
        )
    t1 = time.perf_counter()
    results = await asyncio.gather(*(h.get_result() for h in handles))
    t_end = time.perf_counter()
    assert all(r == 3 for r in results)
    return {"start_rate": n / (t1 - t0), "end_to_end_rate": n / (t_end - t0)}


async def queued(wf: Any, queue: Queue, n: int, chunk: int) -> dict[str, float]:
    t0 = time.perf_counter()
    handles: list[Any] = []
    for lo in range(0, n, chunk):
        handles += await asyncio.gather(
            *(queue.enqueue_async(wf, i) for i in range(lo, min(n, lo + chunk)))
        )
    t1 = time.perf_counter()
    results = await asyncio.gather(*(h.get_result() for h in handles))
    t_end = time.perf_counter()
    assert all(r == 3 for r in results)
    return {"start_rate": n / (t1 - t0), "end_to_end_rate": n / (t_end - t0)}


def one(variant: str, scenario: str, n: int, chunk: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="dbos-bench-") as tmp:
        wf, queue = setup(os.path.join(tmp, "dbos.sqlite"), variant)
        try:
            fn = concurrent if scenario == "concurrent" else queued
            return asyncio.run(fn(wf, queue, n, chunk))
        finally:
            DBOS.destroy(destroy_registry=True)


def worker_main(url: str) -> None:
    """A worker process for the PostgreSQL mode: DBOS with a default queue."""
    DBOS(config=config(url))

    @DBOS.step()
    async def inc(x: int) -> int:
        return x + 1

    @DBOS.workflow(name="three")
    async def three(i: int) -> int:
        v = await inc(0)
        v = await inc(v)
        return await inc(v)

    DBOS.launch()
    DBOS.register_queue("bench")
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def spawn_worker(url: str) -> Any:
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", url], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"DBOS worker did not start: {line!r}")
    return proc


async def multi_process(url: str, n: int, processes: int) -> dict[str, float]:
    from dbos import DBOSClient, EnqueueOptions

    workers = [spawn_worker(url)]  # the first one migrates the system database
    workers += [spawn_worker(url) for _ in range(processes - 1)]
    client = DBOSClient(system_database_url=url)
    options: EnqueueOptions = {"queue_name": "bench", "workflow_name": "three"}
    try:
        t0 = time.perf_counter()
        for lo in range(0, n, 500):
            await asyncio.gather(
                *(client.enqueue_async(options, i) for i in range(lo, min(n, lo + 500)))
            )
        t1 = time.perf_counter()
        while await asyncio.to_thread(count_workflows, url) < n:
            await asyncio.sleep(0.05)
        t_end = time.perf_counter()
    finally:
        for proc in workers:
            proc.terminate()
            proc.wait(10)
        client.destroy()
    return {"start_rate": n / (t1 - t0), "end_to_end_rate": n / (t_end - t0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=1000)
    # sync-steps (plain def workflow and steps) would need DBOS.start_workflow from
    # threads; not wired up here (start_workflow_async on a sync workflow fails).
    parser.add_argument("--variant", choices=["async-steps", "sync-steps"], default="async-steps")
    parser.add_argument("--only", choices=["concurrent", "queue"], default=None)
    parser.add_argument("--database", help="PostgreSQL server URL (a fresh database is made)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (--database)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker)
        return
    if args.database:
        samples = []
        for rep in range(args.runs):
            with system_database(args.database) as url:
                s = asyncio.run(multi_process(url, args.n, args.processes))
            samples.append(s)
            print(f"  postgres {args.processes} processes rep {rep + 1}: "
                  + ", ".join(f"{k}={v:,.0f}" for k, v in s.items()), file=sys.stderr)  # fmt: skip
        med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
        if not args.json:
            print(f"\nDBOS PostgreSQL, {args.processes} worker processes, {args.n:,} runs x 3 "
                  f"steps: {med['end_to_end_rate']:,.0f} runs/s end to end")  # fmt: skip
        finish("dbos_throughput_postgres", args.json,
               {"params": vars(args), "median": med, "samples": samples})  # fmt: skip
        return
    variants = [args.variant]
    scenarios = [args.only] if args.only else ["concurrent", "queue"]
    results = []
    for variant in variants:
        for scenario in scenarios:
            samples = []
            for rep in range(args.runs):
                s = one(variant, scenario, args.n, args.chunk)
                samples.append(s)
                print(
                    f"  {variant} {scenario} rep {rep + 1}: "
                    + ", ".join(f"{k}={v:,.0f}" for k, v in s.items()),
                    file=sys.stderr,
                )
            med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
            results.append(
                {"variant": variant, "scenario": scenario, "median": med, "samples": samples}
            )
    if args.json:
        finish("dbos_throughput", True, {"params": vars(args), "results": results})
        return
    import dbos

    version = getattr(dbos, "__version__", None)
    if version is None:
        from importlib.metadata import version as _v

        version = _v("dbos")
    print(f"\nDBOS {version} throughput: {args.n:,} runs x 3 steps, SQLite, median of {args.runs}")
    print_table(
        ["steps", "scenario", "start runs/s", "end-to-end runs/s"],
        [
            [
                r["variant"],
                r["scenario"],
                f"{r['median']['start_rate']:,.0f}",
                f"{r['median']['end_to_end_rate']:,.0f}",
            ]
            for r in results
        ],
    )
    path = write_json(
        "dbos_throughput",
        {
            "benchmark": "dbos_throughput",
            "dbos_version": version,
            "params": vars(args),
            "machine": machine_info(),
            "results": results,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
