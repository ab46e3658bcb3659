"""A step's retry jitter never touches the ``random`` module's shared state, which an
application may have seeded (and a property-based test's generator watches)."""

from __future__ import annotations

import random

import tarry
from tarry.testing import Environment


async def test_retries_leave_the_random_modules_state_alone() -> None:
    app = tarry.App(retry_base="1s", retry_cap="1s")
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("not yet")
        return "done"

    @app.workflow("flaky", retries=3)
    async def flow(ctx: tarry.Context, step: tarry.Step) -> str:
        return str(await step.run("call", flaky))

    random.seed(7)
    before = random.getstate()
    async with Environment(app) as env:
        run_id = await env.start("flaky")
        await env.advance("10s")
        assert await env.result(run_id) == "done"
    assert calls["n"] == 3
    assert random.getstate() == before
