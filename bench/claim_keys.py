"""Claim throughput with concurrency keys against the same workload without them.

    .venv/bin/python bench/claim_keys.py [--runs 10000] [--keys 1000] [--batch 100]
        [--rounds 2] [--store sqlite postgres]

N queued runs of one workflow, run i holding key ``k<i % keys>``: "keyed" gives the
workflow ``concurrency=tarry.limit(1, key="event.data.k")``, "plain" gives it nothing.
Straight on the store, a claimer leases ``--batch`` runs at a time and ends each run it
got (``finish``) before claiming again, until none is left; the claims' own time is
summed (runs claimed per second of claiming) beside the whole loop's. The two
workloads run in turn (ABBA over ``--rounds``) on a fresh SQLite file and a fresh
PostgreSQL schema each time (``TARRY_BENCH_POSTGRES``, default the local test
database; the schema is dropped after). Target: keyed claims cost at most 2x plain.

    .venv/bin/python bench/claim_keys.py --explain [--parked 100000]

prints PostgreSQL's plans of the claim's statements (``claim_plain``, ``due_runs``,
``due_gated_runs``) and of each lookup they make through ``claim_lookup``, through
``auto_explain``, over that many parked runs (waiting on a signal, no deadline, copied
in SQL) and 100 queued ones, as planned with no statistics and after ANALYZE: each
lookup must be an index scan of its partial index, the same both times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine_info, print_table, write_json
from tarry.store import open_store
from tarry.store.base import NewRun, WorkflowConfig
from tarry.store.flow_records import FlowRules, KeyLimit

PG_URL = os.environ.get("TARRY_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
WORKFLOW = "keyed"
LEASE = 300.0


async def one(url: str, keyed: bool, runs: int, keys: int, batch: int) -> dict[str, float]:
    store = open_store(url)
    await store.open()
    try:
        rules = FlowRules(limits=(KeyLimit(1, "event.data.k"),)) if keyed else None
        await store.sync_workflows([WorkflowConfig(WORKFLOW, flow=rules)])
        for start in range(0, runs, 500):
            await asyncio.gather(*(
                store.create_run(NewRun(f"r{i:06d}", WORKFLOW, b'{"k":"k%d"}' % (i % keys)))
                for i in range(start, min(runs, start + 500))
            ))  # fmt: skip
        flows = {WORKFLOW: rules} if rules is not None else None
        claimed = 0
        in_claims = 0.0
        began = time.perf_counter()
        while claimed < runs:
            t = time.perf_counter()
            got = await store.claim([WORKFLOW], batch, LEASE, None, flows=flows)
            in_claims += time.perf_counter() - t
            if not got.runs:
                raise RuntimeError(f"nothing claimable after {claimed} of {runs} runs")
            claimed += len(got.runs)
            await asyncio.gather(
                *(store.finish(c.lease, "completed", b"1", None) for c in got.runs)
            )
        whole = time.perf_counter() - began
        return {"claims_per_s": claimed / in_claims, "loop_per_s": claimed / whole}
    finally:
        await store.close()


def url_for(store: str, tmp: str, n: int) -> tuple[str, str | None]:
    if store == "sqlite":
        return f"sqlite:///{tmp}/claims-{n}.db", None
    schema = f"bench_keys_{uuid.uuid4().hex[:10]}"
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}", schema


def drop(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def explain(parked: int) -> None:
    import psycopg

    from tarry.store.sql import load_queries

    queries = load_queries("postgres")
    url, schema = url_for("postgres", "", 0)
    store = open_store(url)
    await store.open()
    rules = FlowRules(limits=(KeyLimit(1, "event.data.k"),))
    await store.sync_workflows([WorkflowConfig(WORKFLOW, flow=rules)])
    await asyncio.gather(*(
        store.create_run(NewRun(f"q{i:06d}", WORKFLOW, b'{"k":"k%d"}' % i)) for i in range(100)
    ))  # fmt: skip
    await store.close()
    now = time.time() + 1
    params = {"now": now, "workflows": [WORKFLOW], "limit": 100, "lease_until": now + 30}
    try:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            conn.execute(
                "INSERT INTO runs (id, workflow, status, payload, created_at, updated_at, "
                "waiting_for) SELECT 'p' || g, %(w)s, 'waiting', '{}'::bytea, %(now)s, "
                "%(now)s, '{}'::bytea FROM generate_series(1, %(n)s) AS g",
                {"w": WORKFLOW, "now": now - 60, "n": parked},
            )
            # The lookups run inside claim_lookup (migration 0019), whose statements
            # EXPLAIN does not show: auto_explain hands their plans back as notices.
            notices: list[str] = []
            conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
            conn.execute("LOAD 'auto_explain'")
            for setting in (
                "log_min_duration = 0",
                "log_nested_statements = on",
                "log_level = notice",
                "log_analyze = on",
                "log_timing = on",
            ):
                conn.execute(f"SET auto_explain.{setting}")
            for analyzed in (False, True):
                if analyzed:
                    conn.execute("ANALYZE")
                for name in ("claim_plain", "due_runs", "due_gated_runs"):
                    notices.clear()
                    conn.execute("BEGIN")
                    conn.execute(queries[name], params).fetchall()
                    conn.execute("ROLLBACK")
                    stats = "after ANALYZE" if analyzed else "no statistics"
                    print(f"-- {name}, {parked:,} parked, {stats}")
                    print(
                        "\n\n".join(
                            notice.split("\n", 1)[1]
                            for notice in notices
                            if "FROM runs AS r" in notice or "-- " in notice
                        )
                    )
    finally:
        drop(schema)


async def main(args: argparse.Namespace) -> None:
    if args.explain:
        await explain(args.parked)
        return
    found: dict[tuple[str, bool], list[dict[str, float]]] = {}
    n = 0
    with tempfile.TemporaryDirectory(prefix="tarry-claim-keys-") as tmp:
        for round_ in range(args.rounds):
            order = [False, True] if round_ % 2 == 0 else [True, False]
            for store in args.store:
                for keyed in order:
                    n += 1
                    url, schema = url_for(store, tmp, n)
                    try:
                        result = await one(url, keyed, args.runs, args.keys, args.batch)
                    finally:
                        if schema is not None:
                            drop(schema)
                    found.setdefault((store, keyed), []).append(result)
    rows: list[list[Any]] = []
    summary: dict[str, Any] = {}
    for store in args.store:
        plain = statistics.median(r["claims_per_s"] for r in found[store, False])
        keyed = statistics.median(r["claims_per_s"] for r in found[store, True])
        plain_loop = statistics.median(r["loop_per_s"] for r in found[store, False])
        keyed_loop = statistics.median(r["loop_per_s"] for r in found[store, True])
        rows.append([store, f"{plain:,.0f}", f"{keyed:,.0f}", f"{plain / keyed:.2f}x",
                     f"{plain_loop:,.0f}", f"{keyed_loop:,.0f}"])  # fmt: skip
        summary[store] = {"plain_claims_per_s": plain, "keyed_claims_per_s": keyed,
                          "cost": plain / keyed, "plain_loop_per_s": plain_loop,
                          "keyed_loop_per_s": keyed_loop}  # fmt: skip
    print(f"{args.runs:,} queued runs, {args.keys:,} keys, claims of {args.batch}, "
          f"median of {args.rounds} (ABBA)")  # fmt: skip
    print_table(
        ["store", "plain claims/s", "keyed claims/s", "keyed cost", "plain loop/s",
         "keyed loop/s"],
        rows,
    )  # fmt: skip
    write_json("claim_keys", {"machine": machine_info(), "args": vars(args), "results": summary,
                              "raw": {f"{s}-{'keyed' if k else 'plain'}": v
                                      for (s, k), v in found.items()}})  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--store", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--parked", type=int, default=100_000)
    asyncio.run(main(parser.parse_args()))
