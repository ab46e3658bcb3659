"""DBOS side of parked.py and event_match.py: N workflows blocked in ``DBOS.recv``.

One process, SQLite system database in a temp dir, DBOS defaults. A DBOS workflow
waiting in ``recv_async`` is a live asyncio task (a plain ``def`` workflow in
``recv`` would hold a thread) in the process that runs it, so the process that
parks the runs is the one measured (tarry's parked.py measures a separate worker
process; here starting and holding are the same process).

parked       100 warm-up workflows park and are released; the process's RSS, thread
             count and asyncio task count are read; then N workflows are started
             (``start_workflow_async`` in chunks of 1000) and the script waits until
             all N are registered as waiting in ``recv``; the figures are read again.
             Parking rate = N / (first start -> all N waiting).
event-match  after parking N, ``--samples`` times a random parked workflow is sent a
             message (``DBOS.send_async`` to its workflow ID, with a topic): the time
             ``send_async`` takes, and send -> the line after its ``recv``. DBOS
             addresses messages by workflow ID; there is no match on content.

    /tmp/dbosvenv/bin/python bench/dbos_parked.py [--n 10000] [--json]
    /tmp/dbosvenv/bin/python bench/dbos_parked.py --event-match --small 100 --big 10000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dbos import DBOS, SetWorkflowID

from _common import percentile, print_table, rss_mb
from _dbos_common import config, finish, temp_sqlite

TOPIC = "wake"
_woken: dict[str, asyncio.Future[float]] = {}
_loop: asyncio.AbstractEventLoop | None = None


def register() -> Any:
    @DBOS.workflow(name="parked")
    async def parked(key: str) -> None:
        await DBOS.recv_async(TOPIC, timeout_seconds=24 * 3600)
        now = time.perf_counter()
        fut = _woken.get(key)
        if fut is not None and _loop is not None:
            _loop.call_soon_threadsafe(lambda: None if fut.done() else fut.set_result(now))

    return parked


def waiting_in_recv() -> int:
    """How many recv waits DBOS has registered (its listener's map; DBOS internals)."""
    from dbos._dbos import _get_dbos_instance

    return len(_get_dbos_instance()._sys_db.notifications_map.snapshot())


def figures() -> dict[str, float]:
    gc.collect()
    return {"rss_mb": rss_mb(), "threads": threading.active_count(),
            "tasks": len(asyncio.all_tasks())}  # fmt: skip


async def park(wf: Any, prefix: str, n: int) -> float:
    """Start n parked workflows; seconds from the first start to all n waiting."""
    base = waiting_in_recv()
    t0 = time.perf_counter()
    for lo in range(0, n, 1000):

        async def start(i: int) -> None:
            with SetWorkflowID(f"{prefix}-{i}"):
                await DBOS.start_workflow_async(wf, f"{prefix}-{i}")

        await asyncio.gather(*(start(i) for i in range(lo, min(n, lo + 1000))))
    while waiting_in_recv() < base + n:
        await asyncio.sleep(0.05)
    return time.perf_counter() - t0


async def wake(key: str) -> tuple[float, float]:
    """Send to ``key``; (send_async ms, send -> line after recv ms)."""
    assert _loop is not None
    _woken[key] = _loop.create_future()
    t0 = time.perf_counter()
    await DBOS.send_async(key, {"go": True}, TOPIC)
    t_sent = time.perf_counter()
    arrived = await asyncio.wait_for(_woken[key], 600)
    return (t_sent - t0) * 1000, (arrived - t0) * 1000


async def parked_figures(n: int) -> dict[str, float]:
    global _loop
    _loop = asyncio.get_running_loop()
    with temp_sqlite() as url:
        DBOS(config=config(url))
        wf = register()
        DBOS.launch()
        try:
            await park(wf, "warm", 100)
            await asyncio.gather(*(wake(f"warm-{i}") for i in range(100)))
            await asyncio.sleep(1.0)
            before = figures()
            seconds = await park(wf, "k", n)
            await asyncio.sleep(1.0)
            after = figures()
        finally:
            DBOS.destroy(destroy_registry=True)
    return {
        "n": n,
        "park_rate": n / seconds,
        "rss_before_mb": before["rss_mb"],
        "rss_after_mb": after["rss_mb"],
        "rss_growth_mb": after["rss_mb"] - before["rss_mb"],
        "threads_before": before["threads"],
        "threads_after": after["threads"],
        "tasks_before": before["tasks"],
        "tasks_after": after["tasks"],
    }


async def match_figures(n: int, samples: int) -> dict[str, float]:
    global _loop
    _loop = asyncio.get_running_loop()
    sends: list[float] = []
    wakes: list[float] = []
    with temp_sqlite() as url:
        DBOS(config=config(url))
        wf = register()
        DBOS.launch()
        try:
            seconds = await park(wf, "k", n)
            for i in random.sample(range(n), min(samples, n)):
                await asyncio.sleep(random.uniform(0, 1))  # off the listener's poll phase
                send, woke = await wake(f"k-{i}")
                sends.append(send)
                wakes.append(woke)
                print(f"  n={n}: send {send:.2f} ms, woke {woke:.1f} ms", file=sys.stderr)
        finally:
            DBOS.destroy(destroy_registry=True)
    return {
        "n": n,
        "park_rate": n / seconds,
        "send_p50_ms": statistics.median(sends),
        "send_p99_ms": percentile(sends, 99),
        "wake_p50_ms": statistics.median(wakes),
        "wake_p99_ms": percentile(wakes, 99),
        "wake_max_ms": max(wakes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="parked workflows (parked)")
    parser.add_argument("--event-match", action="store_true", help="run event-match instead")
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--big", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.event_match:
        r = asyncio.run(parked_figures(args.n))
        if not args.json:
            print_table(
                ["parked", "park rate/s", "RSS 0 -> N MB", "growth MB", "threads", "tasks"],
                [[r["n"], f"{r['park_rate']:.0f}",
                  f"{r['rss_before_mb']:.1f} -> {r['rss_after_mb']:.1f}",
                  f"{r['rss_growth_mb']:.1f}",
                  f"{r['threads_before']:.0f} -> {r['threads_after']:.0f}",
                  f"{r['tasks_before']:.0f} -> {r['tasks_after']:.0f}"]],
            )  # fmt: skip
        finish("dbos_parked", args.json, {"params": vars(args), **r})
        return
    small = asyncio.run(match_figures(args.small, args.samples))
    big = asyncio.run(match_figures(args.big, args.samples))
    ratio = big["wake_p50_ms"] / small["wake_p50_ms"]
    if not args.json:
        print_table(
            ["parked", "park rate/s", "send p50 ms", "send -> woken p50 ms", "p99 ms"],
            [[r["n"], f"{r['park_rate']:.0f}", f"{r['send_p50_ms']:.2f}",
              f"{r['wake_p50_ms']:.1f}", f"{r['wake_p99_ms']:.1f}"] for r in (small, big)],
        )  # fmt: skip
        print(f"woken p50 ratio {args.big} / {args.small}: {ratio:.2f}")
    finish("dbos_event_match", args.json,
           {"params": vars(args), "small": small, "big": big, "ratio": ratio})  # fmt: skip


if __name__ == "__main__":
    main()
