"""A tarry worker process for the chaos and fencing tests, started with ``sys.executable``.

Workflows:

- ``chaos``: step ``a``, a signal on ``sig:<key>``, step ``b``, an event
  ``chaos/event`` matched on ``data.key``, step ``c``, a message, step ``d``; it
  returns everything it received and every step's output.
- ``fence``: step ``a``, step ``b`` (which waits until the file ``gate-<pid>`` of
  its own process exists in ``--ledger-dir``), step ``c``.

The ledger: every process appends to its own ``ledger-<pid>.log`` in
``--ledger-dir``, one line per record, each written with one ``write`` on an
``O_APPEND`` descriptor, so a SIGKILL loses nothing already written and never
leaves half a line (the page cache outlives the process; ``--fsync`` also
survives the machine). Records, space separated, time in ns since the epoch:

- ``R <run> <pid> <token> <t>``: the handler starts a replay of the run under lease ``token``.
- ``S <run> <step> <pid> <token> <nonce> <t>``: a step function starts.
- ``E <run> <step> <pid> <token> <nonce> <t>``: it returns (its output names ``nonce``).
- ``W <run> <write> <step> <pid> <token> <outcome> <t>``: a fenced store write
  (``save_step``, ``park``, ``finish``, ...) ended: ``ok``, ``LeaseLost`` or the error type.

SIGTERM stops the worker cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import tarry

EVENT = "chaos/event"


class Ledger:
    def __init__(self, directory: Path, fsync: bool) -> None:
        self.pid = os.getpid()
        path = directory / f"ledger-{self.pid}.log"
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.fsync = fsync

    def write(self, *fields: object) -> None:
        os.write(self.fd, (" ".join(map(str, fields)) + "\n").encode())
        if self.fsync:
            os.fsync(self.fd)


def _token(step: Any) -> str:
    # The lease this replay runs under; private, but this is a test program.
    return str(step._x.lease.token)


def watch_fenced_writes(store: Any, ledger: Ledger) -> None:
    """Log the outcome of every fenced write the store is asked to make. The store
    call is shielded, so its outcome is logged even when the heartbeat cancels the
    execution awaiting it."""

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
                ledger.write(
                    "W", lease.run_id, name, step_key, ledger.pid, lease.token, outcome,
                    time.time_ns(),
                )  # fmt: skip

            fut = asyncio.ensure_future(real(lease, *args, **kwargs))
            fut.add_done_callback(done)
            return await asyncio.shield(fut)

        setattr(store, name, fenced)

    wrap("save_step", lambda args: args[0].key)
    wrap("retry_step", lambda args: args[0].key)
    wrap("park", lambda args: args[0].step_key)
    wrap("finish", lambda args: "-")
    wrap("honor_cancel", lambda args: "-")


def build_app(args: argparse.Namespace, ledger: Ledger) -> tarry.App:
    app = tarry.App(args.db, lease=args.lease, retry_base="10ms", retry_cap="100ms")
    watch_fenced_writes(app._store, ledger)
    pid = ledger.pid
    step_seconds = args.step_ms / 1000

    async def work(run_id: str, name: str, token: str, value: Any) -> dict[str, Any]:
        nonce = uuid.uuid4().hex[:12]
        ledger.write("S", run_id, name, pid, token, nonce, time.time_ns())
        if step_seconds:
            await asyncio.sleep(random.uniform(0, step_seconds))
        ledger.write("E", run_id, name, pid, token, nonce, time.time_ns())
        return {"step": name, "by": pid, "nonce": nonce, "value": value}

    @app.workflow("chaos", retries=50)
    async def chaos(ctx: tarry.Context, step: Any) -> dict[str, Any]:
        token = _token(step)
        ledger.write("R", ctx.run_id, pid, token, time.time_ns())
        key = ctx.payload["key"]
        a = await step.run("a", work, ctx.run_id, "a", token, key)
        sig = await step.wait_for_signal("sig", signal=f"sig:{key}", timeout=None)
        b = await step.run("b", work, ctx.run_id, "b", token, sig)
        ev = await step.wait_for_event("ev", event=EVENT, match="data.key", timeout=None)
        c = await step.run("c", work, ctx.run_id, "c", token, ev.data)
        msg = await step.wait_for_message("msg", timeout=None)
        d = await step.run("d", work, ctx.run_id, "d", token, [msg.name, msg.data])
        return {
            "key": key,
            "signal": sig,
            "event": {"id": ev.id, "data": ev.data},
            "message": {"name": msg.name, "data": msg.data},
            "steps": {"a": a, "b": b, "c": c, "d": d},
        }

    gate_dir = Path(args.ledger_dir)

    async def gated(run_id: str, name: str, token: str) -> dict[str, Any]:
        nonce = uuid.uuid4().hex[:12]
        ledger.write("S", run_id, name, pid, token, nonce, time.time_ns())
        gate = gate_dir / f"gate-{pid}"
        while not gate.exists():
            # Block the loop between checks, yielding now and then so the heartbeat
            # keeps the lease: after SIGSTOP/SIGCONT the first thing this process
            # does is see the gate and go straight on to store the result, before
            # its loop can learn that the lease was taken over.
            time.sleep(0.01)
            await asyncio.sleep(0)
        ledger.write("E", run_id, name, pid, token, nonce, time.time_ns())
        return {"step": name, "by": pid, "nonce": nonce}

    @app.workflow("fence", retries=0)
    async def fence(ctx: tarry.Context, step: Any) -> dict[str, Any]:
        token = _token(step)
        ledger.write("R", ctx.run_id, pid, token, time.time_ns())
        a = await step.run("a", work, ctx.run_id, "a", token, None)
        b = await step.run("b", gated, ctx.run_id, "b", token)
        c = await step.run("c", work, ctx.run_id, "c", token, None)
        return {"a": a, "b": b, "c": c, "finished_by": pid}

    return app


async def main(args: argparse.Namespace) -> None:
    ledger = Ledger(Path(args.ledger_dir), args.fsync)
    app = build_app(args, ledger)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with app.worker(concurrency=args.concurrency):
        (Path(args.ledger_dir) / f"ready-{ledger.pid}").touch()
        await stop.wait()
    await app.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--ledger-dir", required=True)
    parser.add_argument("--lease", default="2s")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--step-ms", type=float, default=20.0)
    parser.add_argument("--fsync", action="store_true")
    asyncio.run(main(parser.parse_args()))
