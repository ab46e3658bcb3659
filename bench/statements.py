"""SQL statements per run on SQLite: what the store executes for one 3-step run.

    .venv/bin/python bench/statements.py [--n 2000]
    PYTHONPATH=/tmp/tarry-ab-<sha>/src .venv/bin/python bench/statements.py   # another commit

Every statement any connection of the process executes is counted through
``sqlite3``'s trace callback while N runs of the 3-step async workflow are
started (concurrently) and run by one worker; printed per run, by statement.
Transaction control (BEGIN, COMMIT) is counted apart: group commit shares it
among the runs of a batch.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import sqlite3
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

COUNTS: collections.Counter[str] = collections.Counter()
COUNTING = [False]
_connect = sqlite3.connect


def _shape(sql: str) -> str:
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    text = re.sub(r"\s+", " ", " ".join(lines)).strip()
    text = re.sub(r"'[^']*'|x'[0-9a-fA-F]*'|\b\d+(\.\d+)?\b", "?", text)
    return text[:70]


def _traced(*args: object, **kwargs: object) -> sqlite3.Connection:
    conn = _connect(*args, **kwargs)  # type: ignore[arg-type]

    def trace(sql: str) -> None:
        if COUNTING[0]:
            COUNTS[_shape(sql)] += 1

    conn.set_trace_callback(trace)
    return conn


sqlite3.connect = _traced  # type: ignore[assignment]  (the store connects through it)

from _common import EndCounter, three_step_app  # noqa: E402


async def inc(x: int) -> int:
    return x + 1


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="tarry-statements-") as tmp:
        path = os.path.join(tmp, "tarry.db")
        app = three_step_app(f"sqlite:///{path}", inc)

        ends = EndCounter(app, path)
        async with app.worker(concurrency=32):
            await asyncio.gather(*(app.start("three", {}) for _ in range(20)))
            await ends.wait_for(20)
            await asyncio.sleep(0.2)
            COUNTS.clear()
            COUNTING[0] = True
            await asyncio.gather(*(app.start("three", {}) for _ in range(n)))
            await ends.wait_for(20 + n)
            COUNTING[0] = False
        await app.close()
    control = {k: v for k, v in COUNTS.items() if k.split(" ")[0] in ("BEGIN", "COMMIT")}
    rest = {k: v for k, v in COUNTS.items() if k not in control}
    polls = {k: v for k, v in rest.items() if k.startswith("PRAGMA")}
    work = {k: v for k, v in rest.items() if k not in polls}
    print(f"statements per run: {sum(work.values()) / n:.2f} "
          f"(+ {sum(control.values()) / n:.3f} BEGIN/COMMIT, "
          f"+ {sum(polls.values()) / n:.3f} PRAGMA data_version)")  # fmt: skip
    for sql, count in sorted(work.items(), key=lambda kv: -kv[1]):
        print(f"  {count / n:7.3f}  {sql}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    asyncio.run(main(parser.parse_args().n))
