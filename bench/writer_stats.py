"""Diagnostics for the SQLite writer thread under the throughput or signal workload:
batch sizes, commits, time spent in COMMIT (the fsync) vs running operations, and
operations per kind. Instruments ``SQLiteStore._run_batch`` from outside (monkeypatch;
nothing in src/ changes), so the absolute rates are a little lower than throughput.py's.

    .venv/bin/python bench/writer_stats.py [--variant async-steps] [--scenario backlog]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import throughput
from _common import print_table
from tarry.store.sqlite import SQLiteStore


class _TimedConn:
    """Proxy for the writer's connection that times COMMIT / BEGIN statements."""

    def __init__(self, conn: Any, stats: dict[str, Any]) -> None:
        self._conn = conn
        self._stats = stats

    def execute(self, sql: str, *args: Any) -> Any:
        if sql in ("COMMIT", "BEGIN IMMEDIATE"):
            t = time.perf_counter()
            try:
                return self._conn.execute(sql, *args)
            finally:
                self._stats["sql_" + sql.split()[0].lower()].append(time.perf_counter() - t)
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def install(stats: dict[str, Any]) -> None:
    original = SQLiteStore._run_batch

    def run_batch(self: SQLiteStore, conn: Any, batch: list[Any]) -> None:
        for op in batch:
            stats["kinds"][op.fn.__qualname__.split(".")[1]] += 1
        stats["sizes"].append(len(batch))
        t = time.perf_counter()
        original(self, _TimedConn(conn, stats), batch)  # type: ignore[arg-type]
        stats["batch_s"].append(time.perf_counter() - t)

    SQLiteStore._run_batch = run_batch  # type: ignore[method-assign]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))] if s else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--variant", default="async-steps", choices=["async-steps", "sync-steps", "sync-handler"]
    )
    parser.add_argument("--scenario", default="backlog", choices=["backlog", "concurrent"])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    stats: dict[str, Any] = {
        "sizes": [],
        "batch_s": [],
        "sql_commit": [],
        "sql_begin": [],
        "kinds": Counter(),
    }
    install(stats)
    fn = throughput.backlog if args.scenario == "backlog" else throughput.concurrent
    t0 = time.perf_counter()
    result = asyncio.run(fn(args.variant, args.n, 1000, args.concurrency))
    wall = time.perf_counter() - t0
    print(
        f"{args.variant} {args.scenario}: " + ", ".join(f"{k}={v:,.2f}" for k, v in result.items())
    )
    sizes, batch_s, commit = stats["sizes"], stats["batch_s"], stats["sql_commit"]
    busy = sum(batch_s)
    print(
        f"\n{len(sizes):,} transactions, {sum(sizes):,} operations in {wall:.2f} s wall; "
        f"writer busy {busy:.2f} s ({busy / wall:.0%}), of which COMMIT {sum(commit):.2f} s"
    )
    print_table(
        ["", "mean", "p50", "p90", "p99", "max"],
        [
            [
                "ops per transaction",
                f"{sum(sizes) / len(sizes):.1f}",
                *(f"{pct(sizes, q):.0f}" for q in (50, 90, 99)),
                max(sizes),
            ],
            [
                "transaction ms",
                f"{busy / len(batch_s) * 1000:.2f}",
                *(f"{pct(batch_s, q) * 1000:.2f}" for q in (50, 90, 99)),
                f"{max(batch_s) * 1000:.2f}",
            ],
            [
                "COMMIT ms",
                f"{sum(commit) / len(commit) * 1000:.2f}",
                *(f"{pct(commit, q) * 1000:.2f}" for q in (50, 90, 99)),
                f"{max(commit) * 1000:.2f}",
            ],
        ],
    )
    total_ops = sum(stats["kinds"].values())
    print("\noperations by kind:")
    for kind, n in stats["kinds"].most_common():
        print(f"  {n:8,}  {n / total_ops:6.1%}  {kind}  ({n / args.n:.2f} per run)")


if __name__ == "__main__":
    main()
