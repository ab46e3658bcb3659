"""CPU per SQLite statement while the 3-step workflow runs: where the writer's time goes.

    .venv/bin/python bench/statement_cpu.py [--n 4000] [--top 16]
    PYTHONPATH=/tmp/tarry-ab-<sha>/src .venv/bin/python bench/statement_cpu.py   # another commit

Runs ``bench/thread_cpu.py``'s workload (N runs of the 3-step async workflow started
while one worker runs, one SQLite file) with every ``sqlite3`` connection made by a
factory that times each ``execute``: wall time, and the CPU of the calling thread
(``time.thread_time``). Prints, per statement (its first words), how often it ran,
its wall and CPU time each, and its CPU per run. The timing adds its own cost to each
statement (about a microsecond): compare statements and commits with each other, not
with ``thread_cpu.py``'s totals.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sqlite3
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import thread_cpu

WALL: collections.Counter[str] = collections.Counter()
CPU: collections.Counter[str] = collections.Counter()
COUNT: collections.Counter[str] = collections.Counter()


class TimedConnection(sqlite3.Connection):
    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return super().execute(sql, parameters)
        finally:
            key = " ".join(sql.split())[:72]
            WALL[key] += time.perf_counter() - wall
            CPU[key] += time.thread_time() - cpu
            COUNT[key] += 1


def main(n: int, top: int) -> None:
    connect = sqlite3.connect

    def timed_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", TimedConnection)
        return connect(*args, **kwargs)

    sqlite3.connect = timed_connect  # type: ignore[assignment]
    asyncio.run(thread_cpu.main(n, False, 32))
    print(f"{'count':>7}  {'wall us':>8}  {'CPU us':>7}  {'CPU us/run':>10}  statement")
    for key, _ in CPU.most_common(top):
        count = COUNT[key]
        print(f"{count:7d}  {WALL[key] / count * 1e6:8.1f}  {CPU[key] / count * 1e6:7.1f}  "
              f"{CPU[key] / n * 1e6:10.1f}  {key}")  # fmt: skip
    print(f"all statements: {sum(CPU.values()) / n * 1e6:.0f} us of CPU per run")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--top", type=int, default=16)
    args = parser.parse_args()
    main(args.n, args.top)
