"""A tarry worker process for the crash tests, started with ``sys.executable``.

Workflows:

- ``crash``: steps ``a``, ``b`` (which sleeps ``--hang`` seconds in the middle), ``c``;
  every execution of a step function appends ``<what> <run id> <pid>`` to the
  ``--ledger`` file.
- ``parked``: waits for signal ``park:<i>`` with no deadline and returns its data.

With ``--stats`` the process rewrites that file every 50 ms with its asyncio task
count, thread count and the number of runs its worker is executing. SIGTERM stops
the worker cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import tarry
from tarry.worker import Worker


def build_app(args: argparse.Namespace) -> tarry.App:
    app = tarry.App(
        args.db, lease=args.lease, retry_base="10ms", retry_cap="50ms", sticky_for=args.sticky_for
    )
    pid = os.getpid()

    def record(line: str) -> None:
        # One write per line on an O_APPEND descriptor: lines never interleave.
        fd = os.open(args.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{line} {pid}\n".encode())
        finally:
            os.close(fd)

    def plain(name: str, run_id: str) -> str:
        record(f"{name} {run_id}")
        return f"{name}-by-{pid}"

    def slow_b(run_id: str) -> str:
        record(f"b-start {run_id}")
        time.sleep(args.hang)
        record(f"b-end {run_id}")
        return f"b-by-{pid}"

    @app.workflow("crash")
    async def crash(ctx: tarry.Context, step: Any) -> dict[str, str]:
        a = await step.run("a", plain, "a", ctx.run_id)
        b = await step.run("b", slow_b, ctx.run_id)
        c = await step.run("c", plain, "c", ctx.run_id)
        return {"a": a, "b": b, "c": c, "finished_by": str(pid)}

    @app.workflow("parked")
    async def parked(ctx: tarry.Context, step: Any) -> dict[str, Any]:
        data = await step.wait_for_signal("wait", signal=f"park:{ctx.payload['i']}", timeout=None)
        return {"i": ctx.payload["i"], "got": data}

    return app


async def write_stats(path: Path, worker: Worker) -> None:
    tmp = path.with_suffix(".tmp")
    sample = 0
    while True:
        sample += 1
        stats = {
            "sample": sample,
            "tasks": len(asyncio.all_tasks()),
            "threads": threading.active_count(),
            "active": len(worker._active),
            "asleep": len(worker._sleepers),
        }
        tmp.write_text(json.dumps(stats))
        os.replace(tmp, path)
        await asyncio.sleep(0.05)


async def main(args: argparse.Namespace) -> None:
    app = build_app(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with app.worker(concurrency=args.concurrency) as worker:
        stats = None
        if args.stats:
            stats = asyncio.create_task(write_stats(Path(args.stats), worker))
        await stop.wait()
        if stats is not None:
            stats.cancel()
    await app.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--lease", default="1s")
    parser.add_argument("--hang", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--stats", default=None)
    parser.add_argument("--sticky-for", default="30s")
    asyncio.run(main(parser.parse_args()))
