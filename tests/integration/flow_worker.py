"""A worker process for the keyed-concurrency test, started with ``sys.executable``.

Workflow ``keyed``: at most one run per ``event.data.customer`` executing at once;
its one step appends ``start <customer> <run id> <time> <pid>`` to the ``--ledger``
file, sleeps ``--hold`` seconds of real time, and appends the same ``end`` line.
A file ``<ledger>.ready-<pid>`` says the worker runs. SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from typing import Any

import tarry


def build_app(args: argparse.Namespace) -> tarry.App:
    app = tarry.App(args.db, lease=args.lease)
    pid = os.getpid()

    def record(what: str, customer: str, run_id: str) -> None:
        # One write per line on an O_APPEND descriptor: lines never interleave.
        fd = os.open(args.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{what} {customer} {run_id} {time.time():.6f} {pid}\n".encode())
        finally:
            os.close(fd)

    @app.workflow("keyed", concurrency=tarry.limit(1, key="event.data.customer"))
    async def keyed(ctx: tarry.Context, step: Any) -> str:
        async def work() -> str:
            record("start", ctx.payload["customer"], ctx.run_id)
            await asyncio.sleep(args.hold)
            record("end", ctx.payload["customer"], ctx.run_id)
            return str(pid)

        return await step.run("work", work)

    return app


async def main(args: argparse.Namespace) -> None:
    app = build_app(args)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with app.worker(concurrency=args.concurrency):
        open(f"{args.ledger}.ready-{os.getpid()}", "w").close()
        await stop.wait()
    await app.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--lease", default="2s")
    parser.add_argument("--hold", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    asyncio.run(main(parser.parse_args()))
