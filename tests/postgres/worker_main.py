"""A worker process for the PostgreSQL tests: ``python worker_main.py URL DIR [LEASE]``.

Registers the ``order`` workflow: a step with a side effect, a wait for the
signal ``go:<run id>``, a second step with a side effect. Each side effect
appends one line to ``DIR/ledger-<pid>.txt``, so the test can count them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

import tarry


def record(fd: int, tag: str, run_id: str) -> str:
    os.write(fd, f"{tag} {run_id}\n".encode())  # one O_APPEND write: never torn
    return tag


def build(url: str, folder: str, lease: str) -> tarry.App:
    app = tarry.App(url, lease=lease, retry_base="10ms", retry_cap="200ms")
    fd = os.open(
        os.path.join(folder, f"ledger-{os.getpid()}.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND
    )

    @app.workflow("order")
    async def order(ctx: tarry.Context, step: tarry.Step) -> dict[str, Any]:
        await step.run("effect", record, fd, "effect", ctx.run_id)
        timeout = ctx.payload.get("timeout")
        data = await step.wait_for_signal("approve", signal=f"go:{ctx.run_id}", timeout=timeout)
        await step.run("after", record, fd, "after", ctx.run_id)
        return {"data": data, "woke_at": time.time(), "pid": os.getpid()}

    return app


async def main() -> None:
    url, folder = sys.argv[1], sys.argv[2]
    lease = sys.argv[3] if len(sys.argv) > 3 else "5s"
    app = build(url, folder, lease)
    async with app.worker(concurrency=64) as worker:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        print("worker ready", flush=True)
        await stopped.wait()
        worker.stop()
    await app.close()


if __name__ == "__main__":
    asyncio.run(main())
