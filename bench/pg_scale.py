"""PostgreSQL with many parked runs: waking one, one event for many, parking, ended history.

wake     N runs park on a signal with no deadline (one parked by a worker, the rest
         copied from its rows in SQL, so that 100,000 take seconds); one worker
         process; the driver sends a signal to a random parked run and times it to
         the handler's line after the wait (the worker prints ``time.time()``).
         Measured with the statistics autovacuum left: none here, where the
         server runs with autovacuum off (the JSON says whether ``runs`` was ever
         auto-analyzed); with ``--analyze``, again after a manual ANALYZE, for
         reference. Target: p50 at 100,000 <= 1.5x p50 at 100.
fanout   N runs park on ``wait_for_event(match="data.group")`` with one group; one
         event matches all of them. Times ``send_event`` and its return -> all N
         ended (one worker process). Target at 10,000: <= 0.3 s and <= 3 s. With
         ``--others M``, M more runs parked on the same event for another group,
         made before them, that the event passes by.
park     N runs started (gather in chunks of 1,000) while one worker process parks
         them on a signal: first start -> the last one parked. Target >= 4,000/s.
ended    3-step throughput (2 worker processes) and wake latency, on an empty store
         and on one holding M ended runs (inserted in SQL, then a CHECKPOINT), the
         two measured in turn (ABBA, --inner-rounds, medians). Target: within 15 %.

Each scenario prints one JSON line and writes results/pg_scale_<scenario>.json.
With ``--base COMMIT`` every scenario runs for that commit and for this tree,
interleaved (ABBA, as bench/ab.py), the same script on both sides with
PYTHONPATH pointing at each side's src. With ``TARRY_BENCH_WORKER_GC=tuned`` (or
``python``) the worker processes set their garbage collector as ``tarry worker --gc``
does; unset, they leave Python's as it is, as an ``app.worker()`` does.

    .venv/bin/python bench/pg_scale.py wake --n 100 100000
    .venv/bin/python bench/pg_scale.py fanout --n 10000
    .venv/bin/python bench/pg_scale.py park --n 20000
    .venv/bin/python bench/pg_scale.py ended --ended 1000000
    .venv/bin/python bench/pg_scale.py --base acf9556 --rounds 2 wake fanout park
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tarry
from _common import machine_info, print_table, write_json
from postgres import make_app as postgres_app

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_URL = os.environ.get("TARRY_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def make_app(url: str) -> tarry.App:
    """postgres.py's workflows, and one that waits on a shared event (the fan-out)."""
    app = postgres_app(url)

    @app.workflow("fan")
    async def fan(ctx: tarry.Context, step: tarry.Step) -> None:
        await step.wait_for_event("wait", event="app/fan", match="data.group", timeout=None)

    return app


async def worker_main(url: str) -> None:
    app = make_app(url)
    if os.environ.get("TARRY_BENCH_WORKER_GC"):  # the worker's collector as `tarry worker --gc`
        from tarry.process_gc import parse_gc_mode, tune_gc

        tune_gc(parse_gc_mode(os.environ["TARRY_BENCH_WORKER_GC"]))
    async with app.worker(concurrency=256):
        print("ready", flush=True)
        await asyncio.Event().wait()


def spawn(url: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", url], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(10)


# -- the database, in SQL ----------------------------------------------------------------


def split(url: str) -> tuple[str, str]:
    base, _, query = url.partition("?")
    return base, dict(p.split("=", 1) for p in query.split("&"))["schema"]


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    import psycopg

    sep = "&" if "?" in url else "?"
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        yield f"{url}{sep}schema={schema}"
    finally:
        with psycopg.connect(url.partition("?")[0], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def sql(url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    import psycopg

    base, schema = split(url)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def count(url: str, status: str, after: int = 0) -> int:
    """Runs in ``status`` among those after ``seq`` ``after``: a count that does not read
    a large history, which would weigh on what is measured."""
    query = "SELECT count(*) FROM runs WHERE seq > %s AND status = %s"
    return int(sql(url, query, (after, status))[0][0])


def last_seq(url: str) -> int:
    return int(sql(url, "SELECT coalesce(max(seq), 0) FROM runs")[0][0])


def columns(url: str, table: str) -> list[str]:
    _, schema = split(url)
    rows = sql(
        url,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = %s AND is_identity = 'NO' ORDER BY ordinal_position",
        (schema, table),
    )
    return [row[0] for row in rows]


def copy_run(url: str, template: str, n: int, prefix: str, *, rekey: str | None) -> None:
    """``n`` copies of the run ``template`` (its runs, steps and waiters rows), with ids
    ``prefix || i``; with ``rekey``, that string in the payload and the waiters' keys
    becomes the new id too (a signal key per run)."""
    new_id = f"'{prefix}' || g"

    def select(table: str, owner: str, override: dict[str, str]) -> str:
        cols = columns(url, table)
        exprs = [override.get(c, c) for c in cols]
        return (
            f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(exprs)} "
            f"FROM {table}, generate_series(1, {n}) AS g WHERE {owner} = '{template}'"
        )

    payload = (
        f"convert_to(replace(convert_from(payload, 'UTF8'), '{rekey}', {new_id}), 'UTF8')"
        if rekey
        else "payload"
    )
    key = f"replace(key, '{rekey}', {new_id})" if rekey else "key"
    sql(url, select("runs", "id", {"id": new_id, "payload": payload}))
    spec = f"replace(spec, '{rekey}', {new_id})" if rekey else "spec"
    sql(url, select("steps", "run_id", {"run_id": new_id, "spec": spec}))
    sql(url, select("waiters", "run_id", {"run_id": new_id, "key": key}))


def insert_ended(url: str, m: int) -> None:
    """``m`` completed runs of three-steps with their three step records, in SQL."""
    now = time.time() - 3600
    for start in range(0, m, 200_000):
        stop_ = min(m, start + 200_000)
        sql(
            url,
            "INSERT INTO runs (id, workflow, status, payload, output, created_at, updated_at,"
            " ended_at) SELECT 'e' || g, 'three-steps', 'completed', 'null', '3', %(t)s + g *"
            " 1e-3, %(t)s + g * 1e-3, %(t)s + g * 1e-3"
            " FROM generate_series(%(a)s::int, %(b)s::int) g",
            {"t": now, "a": start, "b": stop_ - 1},
        )
        sql(
            url,
            "INSERT INTO steps (run_id, key, kind, status, output, attempts, started_at, ended_at)"
            " SELECT 'e' || g, k, 'run', 'completed', '1', 1, %(t)s, %(t)s"
            " FROM generate_series(%(a)s::int, %(b)s::int) g, unnest(ARRAY['a', 'b', 'c']) k",
            {"t": now, "a": start, "b": stop_ - 1},
        )


def autoanalyzed(url: str) -> bool:
    _, schema = split(url)
    rows = sql(
        url,
        "SELECT last_autoanalyze IS NOT NULL FROM pg_stat_user_tables "
        "WHERE schemaname = %s AND relname = 'runs'",
        (schema,),
    )
    return bool(rows and rows[0][0])


async def wait_for(url: str, status: str, n: int, timeout: float = 600.0, after: int = 0) -> None:
    give_up = time.monotonic() + timeout
    while await asyncio.to_thread(count, url, status, after) < n:
        if time.monotonic() > give_up:
            raise TimeoutError(f"fewer than {n} runs {status}")
        await asyncio.sleep(0.02)


# -- scenarios ---------------------------------------------------------------------------


async def park_signalled(app: tarry.App, url: str, n: int, tag: str = "") -> None:
    """``n`` runs of ``signalled`` parked, keys {tag}p1..{tag}pn (plus the template,
    ``{tag}tmplkey``)."""
    await app.start("signalled", {"key": f"{tag}tmplkey"}, run_id=f"{tag}tmpl")
    await wait_for(url, "waiting", 1, after=await asyncio.to_thread(last_seq, url) - 1)
    if n > 1:
        await asyncio.to_thread(
            copy_run, url, f"{tag}tmpl", n - 1, f"{tag}p", rekey=f"{tag}tmplkey"
        )


async def wake_samples(
    app: tarry.App, worker: subprocess.Popen[str], keys: list[str]
) -> list[float]:
    assert worker.stdout is not None
    latencies = []
    for key in keys:
        await asyncio.sleep(0.01)
        sent = time.time()
        await app.send_signal(key, {})
        line = await asyncio.to_thread(worker.stdout.readline)
        got, arrived = line.split()
        assert got == key, line
        latencies.append((float(arrived) - sent) * 1000)
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"p50_ms": statistics.median(ordered), "p90_ms": ordered[int(len(ordered) * 0.9)],
            "max_ms": ordered[-1], "samples": len(ordered)}  # fmt: skip


async def wake(base_url: str, n: int, samples: int, analyze: bool) -> dict[str, Any]:
    with fresh_schema(base_url) as url:
        async with make_app(url) as app:
            worker = spawn(url)
            try:
                await park_signalled(app, url, n)
                # Every sample wakes a run still parked: a signal to one already woken
                # would be buffered, and its line would never come. With too few parked
                # runs for both passes, each pass gets half of them.
                wanted = samples * 2 if analyze else samples
                keys = [f"p{i}" for i in random.sample(range(1, n), min(wanted, n - 1))]
                first = min(samples, len(keys) // 2) if analyze else len(keys)
                fresh = summary(await wake_samples(app, worker, keys[:first]))
                result: dict[str, Any] = {"n": n, "no_stats": fresh}
                result["autoanalyzed"] = await asyncio.to_thread(autoanalyzed, url)
                if analyze:  # for reference: other rows after a manual ANALYZE
                    await asyncio.to_thread(sql, url, "ANALYZE runs")
                    later = keys[first:]
                    result["fresh_stats"] = summary(await wake_samples(app, worker, later))
            finally:
                stop([worker])
    return result


async def fanout(base_url: str, n: int, others: int = 0) -> dict[str, Any]:
    with fresh_schema(base_url) as url:
        async with make_app(url) as app:
            worker = spawn(url)
            try:
                await app.start("fan", {"group": 1}, run_id="tmpl")
                await wait_for(url, "waiting", 1)
                if others:  # parked on another group, made first: the event passes them by
                    await asyncio.to_thread(copy_run, url, "tmpl", others, "o", rekey=None)
                    await asyncio.to_thread(
                        sql, url, "UPDATE waiters SET value = '2' WHERE run_id LIKE 'o%'"
                    )
                await asyncio.to_thread(copy_run, url, "tmpl", n - 1, "f", rekey=None)
                await asyncio.sleep(0.5)
                # The setup's garbage is collected first: it triggered a full collection
                # of this process inside the send (12-13 ms); the send's own still count.
                gc.collect()
                t0 = time.perf_counter()
                sent = await app.send_event("app/fan", {"group": 1})
                t1 = time.perf_counter()
                assert len(sent.resumed) == n, len(sent.resumed)
                await wait_for(url, "completed", n)
                t2 = time.perf_counter()
            finally:
                stop([worker])
    return {"n": n, "others": others, "send_event_s": t1 - t0, "resumed_to_ended_s": t2 - t1,
            "total_s": t2 - t0}  # fmt: skip


async def park(base_url: str, n: int) -> dict[str, Any]:
    with fresh_schema(base_url) as url:
        async with make_app(url) as app:
            worker = spawn(url)
            try:
                warm = [app.start("signalled", {"key": f"w{i}"}) for i in range(100)]
                await asyncio.gather(*warm)
                await wait_for(url, "waiting", 100)
                started = time.perf_counter()
                for chunk in range(0, n, 1000):
                    await asyncio.gather(
                        *(app.start("signalled", {"key": f"k{i}"})
                          for i in range(chunk, min(n, chunk + 1000)))
                    )  # fmt: skip
                await wait_for(url, "waiting", n + 100)
                seconds = time.perf_counter() - started
            finally:
                stop([worker])
    return {"n": n, "park_rate": n / seconds, "seconds": seconds}


async def throughput_and_wake(url: str, n: int, samples: int, tag: str) -> dict[str, Any]:
    async with make_app(url) as app:
        workers = [spawn(url) for _ in range(2)]
        try:
            before = await asyncio.to_thread(last_seq, url)
            started = time.perf_counter()
            for chunk in range(0, n, 500):
                await asyncio.gather(
                    *(app.start("three-steps") for _ in range(min(500, n - chunk)))
                )
            await wait_for(url, "completed", n, after=before)
            rate = n / (time.perf_counter() - started)
        finally:
            stop(workers)
        worker = spawn(url)
        try:
            await park_signalled(app, url, 100, tag)
            keys = [f"{tag}p{i}" for i in random.sample(range(1, 100), min(samples, 99))]
            latency = summary(await wake_samples(app, worker, keys))
        finally:
            stop([worker])
    return {"runs_per_s": rate, "wake": latency}


async def ended(base_url: str, m: int, n: int, samples: int, rounds: int = 2) -> dict[str, Any]:
    """Both stores made first, then measured in turn (ABBA over ``rounds``, medians),
    so that what else the machine runs weighs on both alike."""
    result: dict[str, Any] = {"ended": m, "n": n, "rounds": rounds}
    with fresh_schema(base_url) as empty, fresh_schema(base_url) as history:
        for url in (empty, history):
            async with make_app(url):
                pass  # the schema, migrated
        await asyncio.to_thread(insert_ended, history, m)
        # The history's bulk insert leaves ~1 GB of WAL and dirty pages behind: a
        # store that gathered its ended runs over weeks has long written them out.
        await asyncio.to_thread(sql, history, "CHECKPOINT")
        got: dict[str, list[dict[str, Any]]] = {"empty": [], "history": []}
        for round_ in range(rounds):
            order = ["empty", "history"] if round_ % 2 == 0 else ["history", "empty"]
            for label in order:
                url = empty if label == "empty" else history
                got[label].append(await throughput_and_wake(url, n, samples, f"r{round_}"))
    for label, runs in got.items():
        result[label] = {
            "runs_per_s": statistics.median(r["runs_per_s"] for r in runs),
            "wake": {"p50_ms": statistics.median(r["wake"]["p50_ms"] for r in runs)},
            "each": runs,
        }
    result["throughput_ratio"] = result["history"]["runs_per_s"] / result["empty"]["runs_per_s"]
    result["wake_ratio"] = result["history"]["wake"]["p50_ms"] / result["empty"]["wake"]["p50_ms"]
    return result


# -- driving -----------------------------------------------------------------------------


async def one(args: argparse.Namespace) -> dict[str, Any]:
    if args.scenario == "wake":
        sizes = args.n or [100, 100_000]
        by_n = [await wake(args.url, n, args.samples, args.analyze) for n in sizes]
        out: dict[str, Any] = {"sizes": by_n}
        small, big = by_n[0], by_n[-1]
        out["ratio_no_stats"] = big["no_stats"]["p50_ms"] / small["no_stats"]["p50_ms"]
        if "fresh_stats" in big:
            out["ratio_fresh_stats"] = big["fresh_stats"]["p50_ms"] / small["fresh_stats"]["p50_ms"]
        return out
    if args.scenario == "fanout":
        return await fanout(args.url, (args.n or [10_000])[0], args.others)
    if args.scenario == "park":
        return await park(args.url, (args.n or [20_000])[0])
    n = (args.n or [5_000])[0]
    return await ended(args.url, args.ended, n, args.samples, args.inner_rounds)


def figures(scenario: str, r: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of one scenario's result."""
    if scenario == "wake":
        out = {}
        for size in r["sizes"]:
            out[f"wake p50 ms at {size['n']:,}, no stats"] = size["no_stats"]["p50_ms"]
            if "fresh_stats" in size:
                out[f"wake p50 ms at {size['n']:,}, after ANALYZE"] = size["fresh_stats"]["p50_ms"]
        return out
    if scenario == "fanout":
        return {f"send_event s ({r['n']:,} waiters)": r["send_event_s"],
                "send_event return -> all ended, s": r["resumed_to_ended_s"]}  # fmt: skip
    if scenario == "park":
        return {"parking runs/s": r["park_rate"]}
    return {"runs/s, empty": r["empty"]["runs_per_s"],
            f"runs/s, {r['ended']:,} ended": r["history"]["runs_per_s"],
            "wake p50 ms, empty": r["empty"]["wake"]["p50_ms"],
            f"wake p50 ms, {r['ended']:,} ended": r["history"]["wake"]["p50_ms"]}  # fmt: skip


def side_args(args: argparse.Namespace, scenario: str) -> list[str]:
    out = [scenario, "--url", args.url, "--samples", str(args.samples)]
    out += ["--ended", str(args.ended), "--inner-rounds", str(args.inner_rounds)]
    out += ["--analyze"] if args.analyze else []
    out += ["--others", str(args.others)] if args.others else []
    if args.n:
        out += ["--n", *map(str, args.n)]
    return out


def run_side(src: str, argv: list[str], tries: int = 3) -> dict[str, Any]:
    """One side's run of one scenario; tried again if it fails (the shared server
    restarted under it, say)."""
    for attempt in range(tries):
        with tempfile.TemporaryDirectory() as out:
            env = dict(os.environ, PYTHONPATH=src, TARRY_BENCH_RESULTS_DIR=out)
            proc = subprocess.run(
                [sys.executable, __file__, *argv],
                env=env, stdout=subprocess.PIPE, text=True, timeout=3600,
            )  # fmt: skip
        if proc.returncode == 0:
            result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
            return result
        print(f"side run failed (exit {proc.returncode}), try {attempt + 1}", file=sys.stderr)
        time.sleep(5)
    raise RuntimeError(f"{argv} failed {tries} times")


def ab(args: argparse.Namespace) -> None:
    from ab import worktree

    base = os.path.join(worktree(args.base), "src")
    sides = {"base": base, "new": args.new_src or os.path.join(os.path.dirname(HERE), "src")}
    samples: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.rounds):
        for scenario in args.scenarios:
            order = ["base", "new"] if round_ % 2 == 0 else ["new", "base"]
            for side in order:
                result = run_side(sides[side], side_args(args, scenario))
                for name, value in figures(scenario, result).items():
                    samples.setdefault((name, side), []).append(value)
                    print(f"round {round_ + 1} {side:4} {name}: {value:,.3f}", file=sys.stderr)
    names = list(dict.fromkeys(name for name, _ in samples))
    rows = [
        [name, f"{statistics.median(samples[name, 'base']):,.3f}",
         f"{statistics.median(samples[name, 'new']):,.3f}"]
        for name in names
    ]  # fmt: skip
    print(f"\nbase {args.base} vs this tree, median of {args.rounds} interleaved rounds")
    print_table(["figure", "base", "new"], rows)
    write_json("pg_scale_ab", {"benchmark": "pg_scale_ab", "base": args.base,
                               "machine": machine_info(),
                               "samples": [{"figure": n, "side": s, "values": v}
                                           for (n, s), v in samples.items()]})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenarios", nargs="+", choices=["wake", "fanout", "park", "ended"])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--n", type=int, nargs="*", help="sizes (wake: several)")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--analyze", action="store_true", help="wake: again after ANALYZE")
    parser.add_argument("--ended", type=int, default=1_000_000)
    parser.add_argument("--inner-rounds", type=int, default=2,
                        help="ended: rounds of empty and history in turn")  # fmt: skip
    parser.add_argument("--others", type=int, default=0,
                        help="fanout: more runs parked on the event, another value")  # fmt: skip
    parser.add_argument("--base", help="a commit to compare this tree with, interleaved")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--new-src", help="with --base: the new side's src (default: this tree's)")
    args = parser.parse_args()
    if args.base:
        ab(args)
        return
    for scenario in args.scenarios:
        args.scenario = scenario
        result = asyncio.run(one(args))
        payload = {"benchmark": f"pg_scale_{scenario}", "machine": machine_info(), **result}
        write_json(f"pg_scale_{scenario}", payload)
        print_table(["figure", "value"],
                    [[k, f"{v:,.3f}"] for k, v in figures(scenario, result).items()])  # fmt: skip
        print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        asyncio.run(worker_main(sys.argv[2]))
    else:
        main()
