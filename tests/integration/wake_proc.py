"""A tarry worker process for the cross-process wake tests, started with ``sys.executable``.

Workflow ``parked`` waits for signal ``<key>`` (the payload's ``key``) and, right
after the wait returns, prints ``<key> <time.perf_counter()>`` (CLOCK_MONOTONIC:
one clock for every process of the machine). The first line printed is
``ready watching`` or ``ready polling``: how the store notices other processes'
commits. ``--no-watch`` makes inotify unavailable, as on a filesystem or OS without
it. ``--poll-interval`` sets how often the store reads the commit counter beside the
watch (a long one leaves the watch alone to wake it). The worker stops when its
standard input closes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import tarry
from tarry.store import sqlite_watch


async def main(args: argparse.Namespace) -> None:
    if args.no_watch:
        sqlite_watch.FileWatch.open = classmethod(lambda cls, paths: None)  # type: ignore[assignment]
    app = tarry.App(args.db)

    @app.workflow("parked")
    async def parked(ctx: tarry.Context, step: Any) -> None:
        key = ctx.payload["key"]
        await step.wait_for_signal("wait", signal=key, timeout=None)
        print(key, time.perf_counter(), flush=True)

    if args.poll_interval is not None:
        app._store._io.poll_interval = args.poll_interval  # type: ignore[attr-defined]
    async with app.worker():
        watching = app._store._io.watching  # type: ignore[attr-defined]
        print("ready", "watching" if watching else "polling", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await app.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--no-watch", action="store_true")
    parser.add_argument("--poll-interval", type=float, default=None)
    asyncio.run(main(parser.parse_args()))
