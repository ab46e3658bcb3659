"""``--json`` prints a run as the API sends it, without pydantic: the CLI's
converter (``tarry.cli_json``) against the API's models on runs of every shape."""

from __future__ import annotations

from typing import Any

import tarry
from tarry.cli_json import run_json
from tarry.server.responses import run_out
from tarry.testing import Environment

app = tarry.App("sqlite:///:memory:", retry_base="1s")
calls: list[int] = []


@app.workflow("flaky", retries=2)
async def flaky(ctx: tarry.Context, step: tarry.Step) -> Any:
    def once() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    return await step.run("once", once)


@app.workflow("broken", retries=0)
async def broken(ctx: tarry.Context, step: tarry.Step) -> Any:
    await step.run("boom", lambda: 1 / 0)


@app.workflow("gather")
async def gather(ctx: tarry.Context, step: tarry.Step) -> Any:
    await step.run("prepare", lambda: {"n": 1.5, "s": "é"})
    return await step.wait_for_all(
        "both", [tarry.signal("contract:1"), tarry.message("payment")], timeout="7d"
    )


@app.workflow("sides")
async def sides(ctx: tarry.Context, step: tarry.Step) -> Any:
    return await step.parallel(
        lambda: step.wait_for_signal("left", signal="left:1", timeout="1d"),
        lambda: step.sleep("right", "2h"),
    )


def same(run: tarry.Run) -> None:
    for with_steps in (False, True):
        assert run_json(run, with_steps=with_steps) == run_out(
            run, with_steps=with_steps
        ).model_dump(mode="json")


async def test_every_shape_of_run_matches_the_api() -> None:
    async with Environment(app) as env:
        retried = await env.start("flaky", {"a": [1, None]})
        failed = await env.start("broken")
        waiting = await env.start("gather")
        branches = await env.start("sides")
        await env.run_until_idle()
        await env.send_signal("contract:1", {"signed": True})
        await env.advance("2s")

        parked = await env.get_run(waiting)
        assert parked.waiting_for is not None and parked.waiting_for.arrived == [0]
        side = await env.get_run(branches)
        assert side.waiting_for is not None and side.waiting_for.kind == "branches"
        ended = await env.get_run(retried)
        assert ended.status == "completed" and ended.steps[0].failed_attempts
        assert (await env.get_run(failed)).status == "failed"

        await env.app.retry(failed, by="ops")
        forked = await env.app.fork(retried, "once", by="ops")
        await env.run_until_idle()

        for run_id in (retried, failed, waiting, branches, forked):
            same(await env.get_run(run_id))
        copy = await env.get_run(forked)
        assert copy.forked_from == (retried, "once") and copy.changes
        assert (await env.get_run(failed)).changes
