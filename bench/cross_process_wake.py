"""Cross-process wake on SQLite: a signal sent by one process, the parked run resumed
by a worker in another, and the CPU an idle worker costs.

A worker process (this script with ``--child``) runs a workflow that parks on a
signal and, right after ``wait_for_signal`` returns, prints ``time.perf_counter()``
(CLOCK_MONOTONIC, one clock for every process of the machine). This process, a
client App on the same file with no worker, starts a run, waits (untimed) until it
is parked, lets the worker go idle for ``--idle-ms``, then sends the signal.

  latency     from just before ``send_signal`` to the line after the wait, in the worker
  after send  from ``send_signal`` returning (its commit done) to that line

Idle CPU: an idle worker process (nothing to run), utime + stime from
``/proc/<pid>/stat`` over ``--idle-seconds``, as % of one core.

Each variant is a worker process started with its own tarry source tree, so the
code before and after a change is measured side by side, interleaved, in one run:

    git archive HEAD src | tar -x -C /tmp/tarry-before     # the code before
    .venv/bin/python bench/cross_process_wake.py --before /tmp/tarry-before/src

Variants: ``before`` (``--before SRC``), ``after`` (this checkout), and
``after-poll`` (this checkout with inotify disabled: the fallback polling).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
sys.path.insert(0, HERE)

from _common import (  # noqa: E402
    machine_info,
    median,
    percentile,
    print_table,
    temp_sqlite_url,
    write_json,
)

# -- the worker process -------------------------------------------------------------


def child(url: str, no_watch: bool) -> None:
    import tarry

    if no_watch:
        from tarry.store import sqlite_watch

        sqlite_watch.FileWatch.open = classmethod(lambda cls, paths: None)  # type: ignore[assignment]

    app = tarry.App(url)

    @app.workflow("one-wait")
    async def one_wait(ctx: tarry.Context, step: tarry.Step) -> None:
        key = ctx.payload["key"]
        await step.wait_for_signal("wait", signal=key, timeout=None)
        sys.stdout.write(f"{key} {time.perf_counter()}\n")
        sys.stdout.flush()

    async def main() -> None:
        async with app.worker():
            sys.stdout.write("ready\n")
            sys.stdout.flush()
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await app.close()

    asyncio.run(main())


# -- this process -------------------------------------------------------------------


class Worker:
    """A worker process on ``url`` importing tarry from ``src``."""

    def __init__(self, name: str, src: str, url: str, no_watch: bool = False) -> None:
        self.name = name
        env = dict(os.environ, PYTHONPATH=src)
        args = [sys.executable, os.path.abspath(__file__), "--child", url]
        if no_watch:
            args.append("--no-watch")
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"worker {name} did not start: {line!r}")

    def arrival(self) -> tuple[str, float]:
        assert self.proc.stdout is not None
        key, at = self.proc.stdout.readline().split()
        return key, float(at)

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def client_app(url: str) -> Any:
    import tarry

    app = tarry.App(url)

    @app.workflow("one-wait")
    async def one_wait(ctx: tarry.Context, step: tarry.Step) -> None:
        await step.wait_for_signal("wait", signal=ctx.payload["key"], timeout=None)

    return app


async def parked_on(app: Any, run_id: str, key: str) -> None:
    for _ in range(100_000):
        run = await app.get_run(run_id)
        if run.status == "waiting" and run.waiting_for is not None and run.waiting_for.key == key:
            return
        await asyncio.sleep(0.0005)
    raise TimeoutError(f"run {run_id} never parked on {key!r}")


async def round_trips(
    name: str, src: str, n: int, idle_ms: float, no_watch: bool
) -> dict[str, list[float]]:
    latency: list[float] = []
    after_send: list[float] = []
    with temp_sqlite_url() as (url, _path):
        app = client_app(url)
        await app._open()
        worker = Worker(name, src, url, no_watch)
        try:
            for i in range(n):
                key = f"{name}-{i}"
                run_id = await app.start("one-wait", {"key": key})
                await parked_on(app, run_id, key)
                await asyncio.sleep(idle_ms / 1000)
                t0 = time.perf_counter()
                await app.send_signal(key, {"n": i})
                t_sent = time.perf_counter()
                got, at = await asyncio.to_thread(worker.arrival)
                assert got == key, (got, key)
                latency.append((at - t0) * 1000)
                after_send.append((at - t_sent) * 1000)
        finally:
            worker.stop()
            await app.close()
    return {"latency_ms": latency, "after_send_ms": after_send}


def idle_cpu(variants: list[tuple[str, str, bool]], seconds: float) -> dict[str, float]:
    """Every variant's idle worker measured over the same window: % of one core."""
    with temp_sqlite_url() as (url, _path):
        asyncio.run(_prepare(url))
        workers = [Worker(name, src, url, no_watch) for name, src, no_watch in variants]
        try:
            time.sleep(2.0)
            start = [w.cpu_seconds() for w in workers]
            t0 = time.monotonic()
            time.sleep(seconds)
            elapsed = time.monotonic() - t0
            return {
                w.name: (w.cpu_seconds() - s) / elapsed * 100
                for w, s in zip(workers, start, strict=True)
            }
        finally:
            for w in workers:
                w.stop()


async def _prepare(url: str) -> None:
    app = client_app(url)
    await app._open()
    await app.close()


def summarize(values: list[float]) -> dict[str, float]:
    return {q: percentile(values, p) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))} | {
        "max": max(values)
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--no-watch", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--before", metavar="SRC", help="tarry source tree of the code before")
    parser.add_argument("--runs", type=int, default=3, help="repetitions; the median is reported")
    parser.add_argument("--n", type=int, default=200, help="round trips per repetition")
    parser.add_argument("--idle-ms", type=float, default=20.0, help="idle time before a send")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="idle CPU window")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.no_watch)
        return

    variants: list[tuple[str, str, bool]] = []
    if args.before:
        variants.append(("before", os.path.abspath(args.before), False))
    variants += [("after", SRC, False), ("after-poll", SRC, True)]

    sys.path.insert(0, SRC)
    reps: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name, _, _ in variants}
    for rep in range(args.runs):
        for name, src, no_watch in variants:  # interleaved: the load drifts alike
            raw = asyncio.run(round_trips(name, src, args.n, args.idle_ms, no_watch))
            summary = {what: summarize(values) for what, values in raw.items()}
            reps[name].append(summary)
            lat = summary["latency_ms"]
            print(
                f"  {name:10} rep {rep + 1}: p50={lat['p50']:.2f} p99={lat['p99']:.2f} "
                f"max={lat['max']:.2f} ms",
                file=sys.stderr,
            )
    print(f"  idle CPU over {args.idle_seconds:g} s ...", file=sys.stderr)
    cpu = idle_cpu(variants, args.idle_seconds)

    results: dict[str, Any] = {}
    rows = []
    for name, _, _ in variants:
        med = {
            what: {
                stat: median([r[what][stat] for r in reps[name]]) for stat in reps[name][0][what]
            }
            for what in ("latency_ms", "after_send_ms")
        }
        results[name] = {"median": med, "samples": reps[name], "idle_cpu_pct": cpu[name]}
        lat, after = med["latency_ms"], med["after_send_ms"]
        rows.append(
            [
                name,
                f"{lat['p50']:.2f}",
                f"{lat['p90']:.2f}",
                f"{lat['p99']:.2f}",
                f"{after['p50']:.2f}",
                f"{cpu[name]:.3f}",
            ]
        )
    print(
        f"\ncross-process wake, SQLite: {args.n} sequential round trips x {args.runs} "
        f"(median per percentile), idle CPU over {args.idle_seconds:g} s"
    )
    print_table(["variant", "p50 ms", "p90 ms", "p99 ms", "after send p50", "idle CPU %"], rows)
    path = write_json(
        "cross_process_wake",
        {
            "benchmark": "cross_process_wake",
            "params": vars(args),
            "machine": machine_info(),
            "results": results,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
