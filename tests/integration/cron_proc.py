"""A worker process for the cron race test, started with ``sys.executable``.

Its App's clock is a ``ManualClock`` that follows the time (epoch seconds) written
in the ``--clock`` file: a thread reads it every 2 ms and moves the clock, so the
test moves the time of every worker process at once, and their schedulers wake
together and race for the same slot.

Workflow ``tick`` runs every minute (``* * * * *``); its one step appends
``ran <run id> <pid>`` to the ``--ledger`` file. Every call of the store's
``start_slots`` appends ``start <slot run ids> <created ids> <pid>`` there too, so
the test sees which workers tried a slot and which one created its run. The process
appends ``ready <pid>`` once its worker runs; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tarry
from tarry.store.base import NewRun


def record(ledger: str, line: str) -> None:
    # One write per line on an O_APPEND descriptor: lines never interleave.
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def follow(path: Path, clock: tarry.ManualClock, stop: threading.Event) -> None:
    shown = clock.now()
    while not stop.wait(0.002):
        try:
            when = float(path.read_text())
        except (OSError, ValueError):  # replaced just now: read it again
            continue
        if when > shown:
            shown = clock.set(when)


async def main(args: argparse.Namespace) -> None:
    clock_file = Path(args.clock)
    clock = tarry.ManualClock(float(clock_file.read_text()))
    app = tarry.App(args.db, clock=clock, lease="10m")

    @app.workflow("tick", on=tarry.cron("* * * * *"))
    async def tick(ctx: tarry.Context, step: Any) -> str:
        await step.run("note", record, args.ledger, f"ran {ctx.run_id}")
        return str(ctx.payload["scheduled_at"])

    store = app._store
    start_slots = store.start_slots

    async def noted(workflow: str, runs: Sequence[NewRun], covered: float) -> list[str]:
        created = await start_slots(workflow, runs, covered)
        tried = ",".join(run.id for run in runs) or "-"
        record(args.ledger, f"start {tried} {','.join(created) or '-'}")
        return created

    store.start_slots = noted  # type: ignore[method-assign]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    halt = threading.Event()
    follower = threading.Thread(target=follow, args=(clock_file, clock, halt), daemon=True)
    follower.start()
    async with app.worker(concurrency=4):
        record(args.ledger, "ready")
        await stop.wait()
    halt.set()
    await app.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--clock", required=True)
    asyncio.run(main(parser.parse_args()))
