"""What one step save costs SQLite, against other forms of the same write.

    .venv/bin/python bench/step_save.py [--n 5000] [--rounds 2]

A store-made SQLite file (WAL, ``synchronous=FULL``) with 2,000 leased runs; each
form writes N new step rows in one transaction, timed with ``time.thread_time`` (the
CPU of this thread: SQLite's C code and the binding of values), rounds alternating:

- ``save_step_leased`` as the store runs it (insert from the run's row when the lease
  holds, upsert on conflict);
- the same insert without its conflict clause;
- a plain ``INSERT ... VALUES`` of the same 13 named values (no lease check);
- the same save with an index on ``runs (id, lease_token, cancel_requested)`` that
  answers the lease check without the run's row;
- building the parameters alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from tarry.store import open_store
from tarry.store.base import NewRun, WorkflowConfig
from tarry.store.sql import load_queries

RUNS = 2000
PLAIN = (
    "INSERT INTO steps (run_id, key, kind, status, output, error, attempts, started_at, "
    "ended_at, pos, spec, due_at, need) VALUES (:run_id, :key, :kind, :status, :output, "
    ":error, :attempts, :started_at, :ended_at, :pos, :spec, :due_at, :need)"
)


async def make(path: str) -> None:
    store = open_store(f"sqlite:///{path}")
    await store.open()
    await store.sync_workflows([WorkflowConfig("wf")])
    for start in range(0, RUNS, 500):
        await asyncio.gather(*(store.create_run(NewRun(f"r{i}", "wf", b"{}"))
                               for i in range(start, start + 500)))  # fmt: skip
    await store.close()


def params(i: int, prefix: str) -> dict[str, Any]:
    return {"run_id": f"r{i % RUNS}", "key": f"{prefix}{i}", "kind": "run",
            "status": "completed", "output": b"1", "error": None, "attempts": 1,
            "started_at": 1.0, "ended_at": 2.0, "pos": 1, "spec": None, "due_at": None,
            "need": None, "token": "t"}  # fmt: skip


def timed(conn: sqlite3.Connection, write: Callable[[int], object], n: int) -> float:
    conn.execute("BEGIN IMMEDIATE")
    began = time.thread_time()
    for i in range(n):
        write(i)
    used = time.thread_time() - began
    conn.execute("COMMIT")
    return used * 1e6 / n


def main(n: int, rounds: int) -> None:
    save = load_queries("sqlite")["save_step_leased"]
    no_conflict = save.split("ON CONFLICT")[0]
    with tempfile.TemporaryDirectory(prefix="tarry-step-save-") as tmp:
        path = os.path.join(tmp, "tarry.db")
        asyncio.run(make(path))
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("UPDATE runs SET lease_token = 't', status = 'running'")
        found: dict[str, list[float]] = {}

        def writes(sql: str, prefix: str) -> Callable[[int], object]:
            return lambda i: conn.execute(sql, params(i, prefix))

        for r in range(rounds):
            forms = [
                ("save_step_leased (as the store runs it)", writes(save, f"a{r}-")),
                ("the same without its conflict clause", writes(no_conflict, f"b{r}-")),
                ("plain INSERT ... VALUES, 13 named values", writes(PLAIN, f"c{r}-")),
                ("building the parameters alone", lambda i: params(i, "d")),
            ]
            for name, write in forms if r % 2 == 0 else reversed(forms):
                found.setdefault(name, []).append(timed(conn, write, n))
        conn.execute("CREATE INDEX bench_fence ON runs (id, lease_token, cancel_requested)")
        for r in range(rounds):
            name = "save_step_leased, lease check from an index"
            found.setdefault(name, []).append(timed(conn, writes(save, f"e{r}-"), n))
        conn.close()
    print(f"{n:,} step rows per form and round, {rounds} rounds, SQLite {sqlite3.sqlite_version}")
    for name, samples in found.items():
        shown = ", ".join(f"{x:.1f}" for x in samples)
        print(f"{statistics.median(samples):7.1f} us CPU  {name}  ({shown})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    main(args.n, args.rounds)
