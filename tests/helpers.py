"""Small helpers shared by the tests: waiting for a run, stopping worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from typing import IO, Any

import tarry
from tarry.store.base import ClaimBatch


async def wait_for_status(
    app: tarry.App, run_id: str, *statuses: str, timeout: float = 10
) -> tarry.Run:
    """Poll until the run reaches one of ``statuses``; fail with its last state."""
    give_up = time.monotonic() + timeout
    while True:
        run = await app.get_run(run_id)
        if run.status in statuses:
            return run
        if time.monotonic() > give_up:
            raise AssertionError(f"run {run_id} still {run.status} after {timeout}s: {run}")
        await asyncio.sleep(0.01)


def spy_claims(app: tarry.App) -> list[str]:
    """The ids of the runs every claim of ``app``'s store returns, as they come."""
    store: Any = app._store
    claimed: list[str] = []
    claim = store.claim

    async def spied(*args: Any, **kwargs: Any) -> ClaimBatch:
        batch: ClaimBatch = await claim(*args, **kwargs)
        claimed.extend(c.run.id for c in batch.runs)
        return batch

    store.claim = spied
    return claimed


def step(run: tarry.Run, step_id: str) -> tarry.StepRecord:
    for record in run.steps:
        if record.id == step_id:
            return record
    raise AssertionError(f"no step {step_id!r} in {[s.id for s in run.steps]}")


def stop_processes(procs: Iterable[tuple[subprocess.Popen[bytes], IO[bytes], Any]]) -> None:
    """Stop each worker process still running (woken first if a test stopped it with
    SIGSTOP, then SIGTERM, SIGKILL after 10 s) and close its log."""
    for proc, out, _ in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()
