"""Small waiting helpers shared by the behaviour tests."""

from __future__ import annotations

import asyncio
import time

import tarry


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


def step(run: tarry.Run, step_id: str) -> tarry.StepRecord:
    for record in run.steps:
        if record.id == step_id:
            return record
    raise AssertionError(f"no step {step_id!r} in {[s.id for s in run.steps]}")
