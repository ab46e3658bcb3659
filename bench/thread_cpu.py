"""CPU per run, per thread: where a 3-step run's time goes inside one process.

    .venv/bin/python bench/thread_cpu.py [--n 5000] [--sync] [--concurrency 32]
    PYTHONPATH=/tmp/tarry-ab-<sha>/src .venv/bin/python bench/thread_cpu.py   # another commit

N runs of the 3-step workflow are started (in chunks of 500, concurrently) while one
worker runs on a fresh SQLite file; from the first start to the last end, each
thread's CPU time (``/proc/self/task/<tid>/stat``, user + system) is divided by N.
The event loop's thread runs the engine, ``tarry-sqlite-writer`` the store's
statements and commits, ``tarry-sqlite-poller`` the watch for other processes'
commits; "other threads" is the rest of the process (a sync step's threads, each
too brief for its own tick count). CPU is steadier than wall time on a shared
machine: compare commits by it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import EndCounter, three_step_app

TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[str, float]:
    found: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used = (int(fields[11]) + int(fields[12])) / TICK
        found[thread.name] = found.get(thread.name, 0.0) + used
    return found


async def inc_async(x: int) -> int:
    return x + 1


def inc_sync(x: int) -> int:
    return x + 1


async def workload(
    n: int, fn: Callable[[int], Any], concurrency: int, measured: AbstractContextManager[Any]
) -> None:
    """N runs of the 3-step workflow started (in chunks of 500, concurrently) while one
    worker runs on a fresh SQLite file, inside ``measured`` from the first start to
    the last end (one run first, outside it, so that start-up is left out)."""
    with tempfile.TemporaryDirectory(prefix="tarry-cpu-") as tmp:
        path = os.path.join(tmp, "tarry.db")
        app = three_step_app(f"sqlite:///{path}", fn)

        ends = EndCounter(app, path)
        async with app.worker(concurrency=concurrency):
            await app.start("three", {})
            await ends.wait_for(1)
            with measured:
                for first in range(0, n, 500):
                    starts = (app.start("three", {}) for _ in range(min(500, n - first)))
                    await asyncio.gather(*starts)
                await ends.wait_for(1 + n)
        await app.close()


@contextmanager
def _cpu_used(into: dict[str, Any]) -> Iterator[None]:
    """Each thread's CPU, the process's, and the wall time, before and after, ``into``."""
    into["before"] = thread_cpu()
    into["usage"] = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    yield
    into["took"] = time.perf_counter() - started
    into["after"] = thread_cpu()
    into["used"] = resource.getrusage(resource.RUSAGE_SELF)


async def main(n: int, sync: bool, concurrency: int) -> None:
    found: dict[str, Any] = {}
    await workload(n, inc_sync if sync else inc_async, concurrency, _cpu_used(found))
    took, before, after = found["took"], found["before"], found["after"]
    usage, used = found["usage"], found["used"]
    cpu = (used.ru_utime - usage.ru_utime) + (used.ru_stime - usage.ru_stime)
    named = ("MainThread", "tarry-sqlite-writer", "tarry-sqlite-poller")
    per = {name: (after.get(name, 0.0) - before.get(name, 0.0)) / n * 1e6 for name in named}
    shown = "  ".join(f"{name} {per[name]:.0f} us" for name in named)
    print(f"{n / took:,.0f} runs/s; CPU per run: process {cpu / n * 1e6:.0f} us; {shown}"
          f"  other threads {cpu / n * 1e6 - sum(per.values()):.0f} us")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--sync", action="store_true", help="sync step functions")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.sync, args.concurrency))
