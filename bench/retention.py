"""Retention: N runs started and completed at a steady rate, ended runs purged after 1 min.

The issue: "1,000,000 runs started and completed through a SQLite store with
retention="1m": the database file size plateaus; purge costs under 5 % of worker
time."

One process, a fresh SQLite file in a temp dir (WAL, ``synchronous=FULL``):

1. ``tarry.App(url, retention="1m")`` with a two-step workflow (two async
   ``step.run`` calls); a worker (``app.worker(concurrency=32)``) runs in the same
   event loop as the driver, which starts the N runs at a steady ``--rate`` (runs/s,
   paced against the wall clock, ``asyncio.gather`` in chunks).
2. Every ``--sample-every`` seconds, through a separate read connection: runs
   completed (the App's in-process end hook), runs started, the database file size
   (the ``.db`` plus its ``-wal``), the rows in ``runs``, the file's pages and how
   many of them are free.
3. Purge cost, measured from outside (monkeypatched in this script only):
   ``Worker._purge`` (the claim loop's time in it, from the call to its return:
   queueing behind the writer included), and the writer thread's time executing
   ``purge_runs`` / ``purge_expired`` (the SELECT and the DELETEs; their share of the
   group commit is not separable) against the writer's total busy time.
4. Verdict: the size plateaus (the file grows < 10 % over the last third of the
   run's wall time) and the worker's time in ``_purge`` is < 5 % of the wall time.

A control runs the same load without retention (``--control-runs``, shorter by
default) to show the growth retention prevents.

SQLite does not give deleted pages back to the file system (no ``auto_vacuum``): a
purge frees pages that later inserts reuse, so "plateau" means the file stops
growing once the runs being deleted keep pace with the runs being added, not that
it shrinks.

    .venv/bin/python bench/retention.py [--runs 1000000] [--rate 1500] [--retention 1m]
        [--control-runs 250000] [--only retention|control] [--sample-every 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tarry
import tarry.store.core.claims as claims_mod
import tarry.store.core.operate as operate_mod
from _common import EndCounter, machine_info, print_table, temp_sqlite_url, write_json
from tarry.store.sqlite_writer import GroupCommitWriter
from tarry.worker import Worker

WORKFLOW = "pair"
PLATEAU_GROWTH = 0.10  # at most this growth over the last third of the run
PURGE_SHARE = 0.05  # at most this share of the wall time in Worker._purge


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def inc(x: int) -> int:
    return x + 1


def make_app(url: str, retention: str | None) -> tarry.App:
    app = tarry.App(database=url, retention=retention)

    @app.workflow(WORKFLOW)
    async def pair(ctx: tarry.Context, step: tarry.Step) -> int:
        v = await step.run("a", inc, 0)
        return await step.run("b", inc, v)

    return app


# -- purge accounting (monkeypatches, this script only) ----------------------------------


@dataclass
class PurgeStats:
    loop_calls: int = 0
    loop_seconds: float = 0.0
    loop_max: float = 0.0
    writer_purge_calls: int = 0
    writer_purge_seconds: float = 0.0
    writer_purge_max: float = 0.0
    writer_expired_seconds: float = 0.0
    writer_busy_seconds: float = 0.0
    writer_batches: int = 0
    deleted: int = 0
    full_batches: int = 0
    first_delete: float | None = None
    """perf_counter of the first purge that deleted anything."""
    durations: list[float] = field(default_factory=list)
    """Every ``Worker._purge`` call's duration (s)."""


@contextlib.contextmanager
def instrument(stats: PurgeStats) -> Iterator[None]:
    original_purge = Worker._purge
    original_runs = operate_mod.purge_runs
    original_expired = claims_mod.purge_expired
    original_batch = GroupCommitWriter._run_batch

    async def purge(self: Worker, now: float) -> float:
        t = time.perf_counter()
        try:
            return await original_purge(self, now)
        finally:
            took = time.perf_counter() - t
            stats.loop_calls += 1
            stats.loop_seconds += took
            stats.loop_max = max(stats.loop_max, took)
            stats.durations.append(took)

    async def purge_runs(tx: Any, **kwargs: Any) -> list[str]:
        # Driven synchronously in the writer thread: the time is the body's own.
        t = time.perf_counter()
        ids = await original_runs(tx, **kwargs)
        took = time.perf_counter() - t
        stats.writer_purge_calls += 1
        stats.writer_purge_seconds += took
        stats.writer_purge_max = max(stats.writer_purge_max, took)
        stats.deleted += len(ids)
        if len(ids) >= kwargs.get("limit", 500):
            stats.full_batches += 1
        if ids and stats.first_delete is None:
            stats.first_delete = time.perf_counter()
        return ids

    async def purge_expired(tx: Any, **kwargs: Any) -> int:
        t = time.perf_counter()
        try:
            return await original_expired(tx, **kwargs)
        finally:
            stats.writer_expired_seconds += time.perf_counter() - t

    def run_batch(self: GroupCommitWriter, conn: sqlite3.Connection, batch: list[Any]) -> None:
        t = time.perf_counter()
        try:
            original_batch(self, conn, batch)
        finally:
            stats.writer_busy_seconds += time.perf_counter() - t
            stats.writer_batches += 1

    Worker._purge = purge  # type: ignore[method-assign]
    operate_mod.purge_runs = purge_runs  # type: ignore[assignment]
    claims_mod.purge_expired = purge_expired  # type: ignore[assignment]
    GroupCommitWriter._run_batch = run_batch  # type: ignore[method-assign]
    try:
        yield
    finally:
        Worker._purge = original_purge  # type: ignore[method-assign]
        operate_mod.purge_runs = original_runs
        claims_mod.purge_expired = original_expired
        GroupCommitWriter._run_batch = original_batch  # type: ignore[method-assign]


# -- sampling ----------------------------------------------------------------------------


def file_bytes(path: str) -> tuple[int, int]:
    sizes = []
    for p in (path, path + "-wal"):
        try:
            sizes.append(os.path.getsize(p))
        except OSError:
            sizes.append(0)
    return sizes[0], sizes[1]


def read_db(path: str) -> tuple[int, int, int, int]:
    """Rows in ``runs``, in ``steps``, pages in the file and free pages (a separate
    read connection: WAL, never blocks the writer)."""
    conn = sqlite3.connect(path, timeout=30.0)
    try:
        runs = int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
        steps = int(conn.execute("SELECT count(*) FROM steps").fetchone()[0])
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        return runs, steps, pages, free
    finally:
        conn.close()


@dataclass
class Sample:
    t: float
    started: int
    completed: int
    db_bytes: int
    wal_bytes: int
    runs_rows: int
    steps_rows: int
    pages: int
    free_pages: int
    purge_share: float
    """Share of the wall time so far in ``Worker._purge``."""

    @property
    def size(self) -> int:
        return self.db_bytes + self.wal_bytes


async def take_sample(
    path: str, t0: float, started: int, counter: EndCounter, stats: PurgeStats
) -> Sample:
    t = time.perf_counter() - t0
    completed = counter.ended
    db, wal = file_bytes(path)
    runs, steps, pages, free = await asyncio.to_thread(read_db, path)
    return Sample(
        round(t, 2), started, completed, db, wal, runs, steps, pages, free,
        stats.loop_seconds / t if t >= 1.0 else 0.0,
    )  # fmt: skip


# -- one scenario --------------------------------------------------------------------------


async def scenario(
    label: str,
    n: int,
    rate: float,
    retention: str | None,
    *,
    concurrency: int,
    chunk: int,
    sample_every: float,
    timeout: float,
) -> dict[str, Any]:
    stats = PurgeStats()
    samples: list[Sample] = []
    with temp_sqlite_url() as (url, path), instrument(stats):
        app = make_app(url, retention)
        counter = EndCounter(app, path)
        await app._open()
        started = 0
        async with app.worker(concurrency=concurrency):
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            next_sample = 0.0

            async def sample() -> None:
                s = await take_sample(path, t0, started, counter, stats)
                samples.append(s)
                log(
                    f"{label}: t={s.t:6.1f}s started={s.started:>9,} completed={s.completed:>9,} "
                    f"size={s.size / 1e6:8.1f} MB (wal {s.wal_bytes / 1e6:5.1f}) "
                    f"runs={s.runs_rows:>9,} free pages={s.free_pages:>7,} "
                    f"purge {100 * s.purge_share:4.2f} %"
                )

            # Start at a steady rate; sample on the way.
            while started < n:
                elapsed = time.perf_counter() - t0
                if elapsed >= next_sample:
                    await sample()
                    next_sample += sample_every
                due = min(n, int(elapsed * rate) + 1)
                if due > started:
                    todo = min(due - started, chunk)
                    await asyncio.gather(
                        *(app.start(WORKFLOW, {"i": i}) for i in range(started, started + todo))
                    )
                    started += todo
                else:
                    await asyncio.sleep(min(0.02, (started + 1) / rate - elapsed))
            t_started = time.perf_counter()
            # Wait for the last completions, still sampling.
            give_up = time.monotonic() + timeout
            while counter.ended < n:
                if time.monotonic() > give_up:
                    raise TimeoutError(f"{label}: only {counter.ended:,}/{n:,} runs completed")
                if time.perf_counter() - t0 >= next_sample:
                    await sample()
                    next_sample += sample_every
                await asyncio.sleep(0.05)
            t_end = counter.last_end or time.perf_counter()
            await sample()
            wall = t_end - t0
            cpu = time.process_time() - cpu0
        await app.close()
        runs_left, _, _, _ = read_db(path)
        live = sqlite3.connect(path)
        try:
            unfinished = int(
                live.execute("SELECT count(*) FROM runs WHERE ended_at IS NULL").fetchone()[0]
            )
        finally:
            live.close()
    if unfinished:
        raise RuntimeError(f"{label}: {unfinished:,} runs did not end")
    if runs_left + stats.deleted != n:
        raise RuntimeError(
            f"{label}: {runs_left:,} rows left + {stats.deleted:,} purged != {n:,} runs"
        )
    durations = sorted(stats.durations)
    return {
        "label": label,
        "runs": n,
        "rate": rate,
        "retention": retention,
        "wall_seconds": wall,
        "start_seconds": t_started - t0,
        "completed_per_s": n / wall,
        "process_cpu_seconds": cpu,
        "rows_left": runs_left,
        "purge": {
            **{k: v for k, v in asdict(stats).items() if k not in ("durations", "first_delete")},
            "first_delete_at": None if stats.first_delete is None else stats.first_delete - t0,
            "loop_share_of_wall": stats.loop_seconds / wall,
            "writer_share_of_wall": (stats.writer_purge_seconds + stats.writer_expired_seconds)
            / wall,
            "writer_share_of_busy": (stats.writer_purge_seconds + stats.writer_expired_seconds)
            / stats.writer_busy_seconds
            if stats.writer_busy_seconds
            else 0.0,
            "writer_busy_share_of_wall": stats.writer_busy_seconds / wall,
            "loop_p50": durations[len(durations) // 2] if durations else 0.0,
            "loop_p99": durations[int(len(durations) * 0.99)] if durations else 0.0,
        },
        "samples": [asdict(s) | {"size": s.size} for s in samples],
    }


def plateau(result: dict[str, Any]) -> dict[str, float]:
    """Size at two thirds of the wall time against the size at the end, and the
    largest size over the last third."""
    samples = result["samples"]
    end = samples[-1]
    mark = next(s for s in samples if s["t"] >= end["t"] * 2 / 3)
    tail_max = max(s["size"] for s in samples if s["t"] >= mark["t"])
    return {
        "at_two_thirds_t": mark["t"],
        "size_at_two_thirds": mark["size"],
        "size_at_end": end["size"],
        "max_over_last_third": tail_max,
        "growth_last_third": end["size"] / mark["size"] - 1,
        "max_growth_last_third": tail_max / mark["size"] - 1,
    }


def size_at(result: dict[str, Any], completed: int) -> int | None:
    """The file size at the first sample with ``completed`` runs done."""
    for s in result["samples"]:
        if s["completed"] >= completed:
            return int(s["size"])
    return None


def growth_per_run(result: dict[str, Any]) -> float:
    """Bytes the file grows by per run completed, over the second half of the samples
    (past the WAL's first fill, which is a fixed ~4 MB)."""
    samples = result["samples"]
    mid, end = samples[len(samples) // 2], samples[-1]
    return (end["size"] - mid["size"]) / max(1, end["completed"] - mid["completed"])


def thin(samples: list[dict[str, Any]], rows: int) -> list[dict[str, Any]]:
    if len(samples) <= rows:
        return samples
    step = (len(samples) - 1) / (rows - 1)
    return [samples[round(i * step)] for i in range(rows)]


def mb(b: float) -> str:
    return f"{b / 1e6:,.1f}"


def print_samples(result: dict[str, Any], rows: int) -> None:
    print(
        f"\n{result['label']}: {result['runs']:,} runs at {result['rate']:,.0f} runs/s, "
        f"retention {result['retention']}"
    )
    print_table(
        ["t (s)", "started", "completed", "not ended", "db+wal MB", "wal MB", "runs rows",
         "free pages", "purge % of wall"],
        [
            [f"{s['t']:.0f}", f"{s['started']:,}", f"{s['completed']:,}",
             f"{s['started'] - s['completed']:,}", mb(s["size"]),
             mb(s["wal_bytes"]), f"{s['runs_rows']:,}", f"{s['free_pages']:,}",
             f"{100 * s['purge_share']:.2f}"]
            for s in thin(result["samples"], rows)
        ],
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs with retention")
    parser.add_argument("--rate", type=float, default=1500.0, help="runs started per second")
    parser.add_argument("--retention", default="1m", help="the App's retention")
    parser.add_argument(
        "--control-runs", type=int, default=250_000, help="runs of the control (no retention)"
    )
    parser.add_argument("--only", choices=["retention", "control"], default=None)
    parser.add_argument("--concurrency", type=int, default=32, help="worker concurrency")
    parser.add_argument("--chunk", type=int, default=500, help="starts per asyncio.gather, at most")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--rows", type=int, default=25, help="sample rows printed per scenario")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the end")
    args = parser.parse_args()

    common = {
        "concurrency": args.concurrency,
        "chunk": args.chunk,
        "sample_every": args.sample_every,
        "timeout": args.timeout,
    }
    results: dict[str, dict[str, Any]] = {}
    if args.only in (None, "retention"):
        log(f"retention: {args.runs:,} runs at {args.rate:,.0f}/s, retention={args.retention}")
        results["retention"] = asyncio.run(
            scenario("retention", args.runs, args.rate, args.retention, **common)
        )
    if args.only in (None, "control") and args.control_runs > 0:
        log(f"control: {args.control_runs:,} runs at {args.rate:,.0f}/s, no retention")
        results["control"] = asyncio.run(
            scenario("control", args.control_runs, args.rate, None, **common)
        )

    for result in results.values():
        print_samples(result, args.rows)

    verdict: dict[str, Any] = {}
    summary = []
    for name, r in results.items():
        p = r["purge"]
        summary.append(
            [
                name,
                f"{r['runs']:,}",
                f"{r['wall_seconds']:,.0f}",
                f"{r['completed_per_s']:,.0f}",
                mb(r["samples"][-1]["size"]),
                f"{max(s['runs_rows'] for s in r['samples']):,}",
                f"{p['deleted']:,}",
                f"{100 * p['loop_share_of_wall']:.2f}",
                f"{1000 * p['loop_max']:.0f}",
                f"{100 * p['writer_share_of_wall']:.2f}",
                f"{100 * p['writer_share_of_busy']:.2f}",
            ]
        )
    print("\nsummary")
    print_table(
        ["scenario", "runs", "wall s", "completed/s", "final MB", "max runs rows", "purged",
         "_purge % wall", "_purge max ms", "writer purge % wall", "% of writer busy"],
        summary,
    )  # fmt: skip

    if "retention" in results:
        r = results["retention"]
        pl = plateau(r)
        share = r["purge"]["loop_share_of_wall"]
        verdict = {
            "plateau": pl,
            "plateau_ok": pl["max_growth_last_third"] < PLATEAU_GROWTH,
            "purge_share": share,
            "purge_ok": share < PURGE_SHARE,
        }
        print(
            f"\nsize over the last third (t >= {pl['at_two_thirds_t']:.0f} s): "
            f"{mb(pl['size_at_two_thirds'])} -> {mb(pl['size_at_end'])} MB, at most "
            f"{mb(pl['max_over_last_third'])} MB: {100 * pl['max_growth_last_third']:+.1f} % "
            f"(< {100 * PLATEAU_GROWTH:.0f} %): {'PLATEAU' if verdict['plateau_ok'] else 'GROWS'}"
        )
        print(
            f"worker time in _purge: {100 * share:.2f} % of {r['wall_seconds']:,.0f} s "
            f"(< {100 * PURGE_SHARE:.0f} %): {'ok' if verdict['purge_ok'] else 'TOO MUCH'}"
        )
        if "control" in results:
            c = results["control"]
            c_size = c["samples"][-1]["size"]
            per_run = growth_per_run(c)
            extrapolated = c_size + per_run * (r["runs"] - c["runs"])
            same = size_at(r, c["runs"])
            verdict["control"] = {
                "control_bytes_per_run": per_run,
                "control_size": c_size,
                "retention_size_at_same_runs": same,
                "control_extrapolated_to_runs": extrapolated,
            }
            print(
                f"control (no retention): {mb(c_size)} MB after {c['runs']:,} runs "
                f"(+{per_run:,.0f} bytes/run, linear: ~{mb(extrapolated)} MB at "
                f"{r['runs']:,}); with retention {mb(same or 0)} MB after the same number, "
                f"{mb(pl['size_at_end'])} MB at the end"
            )
        ok = verdict["plateau_ok"] and verdict["purge_ok"]
        print(f"verdict: {'PASS' if ok else 'FAIL'}")

    path = write_json(
        "retention",
        {
            "benchmark": "retention",
            "params": vars(args),
            "machine": machine_info(),
            "verdict": verdict,
            "results": results,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
