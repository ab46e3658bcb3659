"""Retries racing each other and cancels across processes on PostgreSQL: every run
ends up with exactly one retry applied and never two executions at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import tarry

SCRIPT = Path(__file__).with_name("operate_main.py")
RUNS = 40


def failing_app(url: str, ledger: list[str], broken: set[str]) -> tarry.App:
    app = tarry.App(url, lease="5s")

    def work(run_id: str) -> str:
        ledger.append(run_id)
        if broken:
            raise RuntimeError("broken")
        return "ok"

    @app.workflow("job", retries=0)
    async def job(ctx, step):
        return await step.run("work", work, ctx.run_id)

    return app


async def failed_runs(app: tarry.App) -> list[str]:
    ids = [await app.start("job") for _ in range(RUNS)]
    async with app.worker():
        for run_id in ids:
            while (await app.get_run(run_id)).status != "failed":
                await asyncio.sleep(0.01)
    return ids


def race(url: str, actions: list[str], ids: list[str]) -> list[list[str]]:
    at = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), url, action, str(at), *ids],
            stdout=subprocess.PIPE,
            text=True,
        )
        for action in actions
    ]
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        outputs.append(out.split("\n"))
    return outputs


async def test_two_processes_retrying_the_same_runs_apply_one_retry_each(pg_url: str) -> None:
    ledger: list[str] = []
    broken = {"yes"}
    app = failing_app(pg_url, ledger, broken)
    ids = await failed_runs(app)
    outputs = await asyncio.to_thread(race, pg_url, ["retry", "retry"], ids)
    ok = Counter(line.split()[1] for out in outputs for line in out if line.startswith("ok"))
    refused = Counter(
        line.split()[1] for out in outputs for line in out if line.startswith("refused")
    )
    assert ok == Counter(ids)  # each run retried exactly once, by one of the two
    assert refused == Counter(ids)
    broken.clear()
    ledger.clear()
    async with app.worker():
        for run_id in ids:
            assert await app.result(run_id, timeout=30) == "ok"
    for run_id in ids:
        run = await app.get_run(run_id)
        assert [c.action for c in run.changes] == ["retried"]
    assert Counter(ledger) == Counter(ids)  # one execution each
    await app.close()


async def test_a_retry_racing_a_cancel_leaves_one_consistent_outcome(pg_url: str) -> None:
    ledger: list[str] = []
    broken = {"yes"}
    app = failing_app(pg_url, ledger, broken)
    ids = await failed_runs(app)
    await asyncio.to_thread(race, pg_url, ["retry", "cancel"], ids)
    broken.clear()
    ledger.clear()
    async with app.worker():
        for run_id in ids:
            while (await app.get_run(run_id)).status not in ("completed", "cancelled"):
                await asyncio.sleep(0.01)
    outcomes: Counter[str] = Counter()
    for run_id in ids:
        run = await app.get_run(run_id)
        assert [c.action for c in run.changes] == ["retried"]
        if run.status == "cancelled":  # retried first, then cancelled while queued
            assert run.error["message"] == "raced"
        outcomes[run.status] += 1
    assert sum(outcomes.values()) == RUNS
    assert max(Counter(ledger).values(), default=0) <= 1  # never two executions
    await app.close()
