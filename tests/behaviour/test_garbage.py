"""An ended run leaves no reference cycle behind: its attempt, records and tasks are
freed as soon as the worker lets go of them.

Objects in a cycle wait for a pass of Python's cyclic garbage collector: a cycle per
run kept every ended run's records (about 16 objects: its attempt, branches, step
records, task and contexts) in memory until the collector came round to find them.
"""

from __future__ import annotations

import asyncio
import collections
import gc
from collections.abc import Callable, Iterator

import pytest

import tarry

from helpers import wait_for_status


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """The collector keeps what it finds unreachable in ``gc.garbage`` (and runs only
    when told); the settings are restored after."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()


def _tarry_objects(found: list[object]) -> collections.Counter[str]:
    return collections.Counter(
        f"{type(o).__module__}.{type(o).__qualname__}"
        for o in found
        if type(o).__module__.startswith("tarry")
    )


def test_runs_that_step_branch_park_and_resume_leave_no_cycle(
    make_app: Callable[..., tarry.App], saved_garbage: list[object]
) -> None:
    app = make_app()

    @app.workflow("turns")
    async def turns(ctx: tarry.Context, step: tarry.Step) -> int:
        a = await step.run("a", lambda: 1)
        b, c = await asyncio.gather(step.run("b", lambda: a), step.run("c", lambda: a + 1))
        got = await step.wait_for_signal("go", signal=f"go-{ctx.run_id}", timeout="1h")
        return int(a + b + c + got)

    async def scenario() -> list[int]:
        async with app.worker():
            ids = [await app.start("turns", {}) for _ in range(20)]
            for run_id in ids:  # each parked before its signal, so each resumes
                await wait_for_status(app, run_id, "waiting", timeout=30)
            for run_id in ids:
                await app.send_signal(f"go-{run_id}", 10)
            return [await app.result(run_id, timeout="30s") for run_id in ids]

    assert asyncio.run(scenario()) == [14] * 20
    gc.collect()
    assert _tarry_objects(saved_garbage) == collections.Counter()
