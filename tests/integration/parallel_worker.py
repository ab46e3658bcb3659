"""A tarry worker process for the crash tests of concurrency inside a run
(``test_parallel_crash.py``), started with ``sys.executable``.

Workflows (``<id>`` is the run's id):

- ``all``: ``step.wait_for_all("both", [signal one:<id>, signal two:<id>])``, beside a
  gated step ``hold`` when the payload has ``"hold": true``; then step ``after``.
- ``group``: ``asyncio.gather`` of steps ``a`` and ``b`` (fast), ``c`` (gated) and
  ``step.wait_for_signal("approve", signal="approve:<id>")``; then step ``d``.

A gated step waits until the file ``gate-<pid>`` of its own process exists in
``--dir``. Every step output names the process and a nonce of its execution.

The ledger: each process appends to its own ``ledger-<pid>.log`` in ``--dir``, one
line per record, each written with one ``write`` on an ``O_APPEND`` descriptor (a
SIGKILL never leaves half a line). Records, space separated, time in ns:

- ``S <run> <step> <pid> <nonce> <t>``: a step function starts.
- ``E <run> <step> <pid> <nonce> <t>``: it returns.
- ``W <run> <write> <step> <pid> <outcome> <t>``: a fenced store write (``save_step``,
  ``park``, ``park_all``, ``finish``, ...) ended: ``ok``, ``LeaseLost`` or the error
  type; ``<step>`` is the step key (``park_all``: the keys joined by commas) or ``-``.

SIGTERM stops the worker cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import tarry


class Ledger:
    def __init__(self, directory: Path) -> None:
        self.pid = os.getpid()
        path = directory / f"ledger-{self.pid}.log"
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, *fields: object) -> None:
        os.write(self.fd, (" ".join(map(str, fields)) + "\n").encode())


def watch_fenced_writes(store: Any, ledger: Ledger) -> None:
    """Log the outcome of every fenced write the store is asked to make (shielded,
    so the outcome is logged even when the execution awaiting it is cancelled)."""

    def wrap(name: str, step_of: Any) -> None:
        real = getattr(store, name)

        @functools.wraps(real)
        async def fenced(lease: Any, *args: Any, **kwargs: Any) -> Any:
            step_key = step_of(args)

            def done(fut: asyncio.Future[Any]) -> None:
                if fut.cancelled():
                    outcome = "cancelled"
                elif fut.exception() is None:
                    outcome = "ok"
                else:
                    outcome = type(fut.exception()).__name__
                ledger.write("W", lease.run_id, name, step_key, ledger.pid, outcome, time.time_ns())

            fut = asyncio.ensure_future(real(lease, *args, **kwargs))
            fut.add_done_callback(done)
            return await asyncio.shield(fut)

        setattr(store, name, fenced)

    wrap("save_step", lambda args: args[0].key)
    wrap("retry_step", lambda args: args[0].key)
    wrap("park", lambda args: args[0].step_key)
    wrap("park_all", lambda args: ",".join(w.step_key for w in args[0]))
    wrap("finish", lambda args: "-")
    wrap("honor_cancel", lambda args: "-")
    wrap("release", lambda args: "-")


def build_app(args: argparse.Namespace, ledger: Ledger) -> tarry.App:
    app = tarry.App(args.db, lease=args.lease, retry_base="10ms", retry_cap="50ms")
    watch_fenced_writes(app._store, ledger)
    pid = ledger.pid
    gate = Path(args.dir) / f"gate-{pid}"

    def plain(run_id: str, name: str) -> dict[str, Any]:
        nonce = uuid.uuid4().hex[:12]
        ledger.write("S", run_id, name, pid, nonce, time.time_ns())
        ledger.write("E", run_id, name, pid, nonce, time.time_ns())
        return {"step": name, "by": pid, "nonce": nonce}

    async def gated(run_id: str, name: str) -> dict[str, Any]:
        nonce = uuid.uuid4().hex[:12]
        ledger.write("S", run_id, name, pid, nonce, time.time_ns())
        while not gate.exists():
            # Block the loop between checks, yielding now and then so the heartbeat
            # keeps the lease: after SIGSTOP/SIGCONT the first thing this process does
            # is see the gate and go on to store the result, before its loop can learn
            # that the lease was taken over.
            time.sleep(0.01)
            await asyncio.sleep(0)
        ledger.write("E", run_id, name, pid, nonce, time.time_ns())
        return {"step": name, "by": pid, "nonce": nonce}

    @app.workflow("all", retries=0)
    async def wait_all(ctx: tarry.Context, step: Any) -> dict[str, Any]:
        rid = ctx.run_id
        both = [tarry.signal(f"one:{rid}"), tarry.signal(f"two:{rid}")]
        hold = None
        if ctx.payload.get("hold"):
            hold, values = await asyncio.gather(
                step.run("hold", gated, rid, "hold"),
                step.wait_for_all("both", both, timeout="1h"),
            )
        else:
            values = await step.wait_for_all("both", both, timeout="1h")
        after = await step.run("after", plain, rid, "after")
        return {"values": values, "hold": hold, "after": after, "finished_by": pid}

    @app.workflow("group", retries=0)
    async def group(ctx: tarry.Context, step: Any) -> dict[str, Any]:
        rid = ctx.run_id
        a, b, c, approved = await asyncio.gather(
            step.run("a", plain, rid, "a"),
            step.run("b", plain, rid, "b"),
            step.run("c", gated, rid, "c"),
            step.wait_for_signal("approve", signal=f"approve:{rid}", timeout="1h"),
        )
        d = await step.run("d", plain, rid, "d")
        return {"a": a, "b": b, "c": c, "approved": approved, "d": d, "finished_by": pid}

    return app


async def main(args: argparse.Namespace) -> None:
    ledger = Ledger(Path(args.dir))
    app = build_app(args, ledger)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with app.worker(concurrency=8):
        (Path(args.dir) / f"ready-{ledger.pid}").touch()
        await stop.wait()
    await app.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--lease", default="2s")
    asyncio.run(main(parser.parse_args()))
