"""Deploying while runs wait, on both stores: versions, ``step.patched``, the
runtime guard against a changed wait, and ``App.check`` (what ``tarry check``
runs) writing nothing and running no step.

Each test parks runs under one App ("v1") and then opens the same database with
another App ("v2") registering the same workflow id with changed code, as a
deploy would.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import timedelta

import psycopg
import pytest

import tarry
from tarry.testing import DEFAULT_START, Environment

LATER = DEFAULT_START + timedelta(hours=1)


def approval_app(version: str, calls: Counter[str], *, key: str = "approve") -> tarry.App:
    app = tarry.App("sqlite:///:memory:", version=version)

    def work(name: str) -> str:
        calls[name] += 1
        return name

    @app.workflow("order")
    async def order(ctx, step):
        await step.run("charge", work, "charge")
        decision = await step.wait_for_signal(
            "approval", signal=f"{key}:{ctx.run_id}", timeout="7d"
        )
        await step.run("ship", work, "ship")
        return decision

    return app


async def park_one(database_url: str, calls: Counter[str]) -> str:
    async with Environment(approval_app("v1", calls), database=database_url) as env:
        run_id = await env.start("order")
        await env.run_until_idle()
        run = await env.get_run(run_id)
    assert run.status == "waiting" and run.version == "v1" and run.last_version == "v1"
    return run_id


def row_counts(database_url: str) -> tuple[int, ...]:
    tables = ("runs", "steps", "waiters", "step_attempts", "run_changes", "messages")
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        try:
            return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)
        finally:
            conn.close()
    base, _, schema = database_url.partition("?schema=")
    with psycopg.connect(base) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)  # type: ignore[index]


async def test_a_changed_wait_key_is_reported_and_never_resumed_silently(database_url: str) -> None:
    calls: Counter[str] = Counter()
    run_id = await park_one(database_url, calls)
    v2 = approval_app("v2", calls, key="approval")  # the wait's signal key changed
    async with Environment(v2, database=database_url, start=LATER) as env:
        report = await env.app.check()
        assert not report.passed()
        [found] = report.runs
        assert (found.run_id, found.verdict, found.version) == (run_id, "error", "v1")
        assert f"signal 'approve:{run_id}'" in found.problems[0]
        assert f"signal 'approval:{run_id}'" in found.problems[0]
        # The old key still resumes the parked run: under v2 it fails, naming both.
        await env.send_signal(f"approve:{run_id}", {"ok": True})
        with pytest.raises(tarry.RunFailed) as failed:
            await env.result(run_id)
        run = await env.get_run(run_id)
    assert failed.value.error["type"] == "NonDeterminismError"
    message = failed.value.error["message"]
    assert "code version v1" in message and "version v2" in message
    assert run.last_version == "v2" and run.version == "v1"
    assert calls["ship"] == 0  # it did not go on into the new code


async def test_a_patched_step_runs_for_new_runs_and_not_for_parked_ones(
    database_url: str,
) -> None:
    calls: Counter[str] = Counter()
    parked = await park_one(database_url, calls)
    v2 = tarry.App("sqlite:///:memory:", version="v2")

    def work(name: str) -> str:
        calls[name] += 1
        return name

    @v2.workflow("order")
    async def order(ctx, step):
        await step.run("charge", work, "charge")
        if await step.patched("fraud-check"):
            await step.run("fraud-check", work, "fraud-check")
        decision = await step.wait_for_signal(
            "approval", signal=f"approve:{ctx.run_id}", timeout="7d"
        )
        await step.run("ship", work, "ship")
        return decision

    async with Environment(v2, database=database_url, start=LATER) as env:
        report = await env.app.check()
        assert report.passed(strict=True), report.runs
        assert report.runs[0].continues_at == "approval"
        fresh = await env.start("order")
        await env.run_until_idle()
        for run_id in (parked, fresh):
            await env.send_signal(f"approve:{run_id}", {"ok": run_id})
            assert await env.result(run_id) == {"ok": run_id}
        old, new = await env.get_run(parked), await env.get_run(fresh)
        assert (await env.app.check()).runs == []  # nothing left waiting
    assert calls == {"charge": 2, "fraud-check": 1, "ship": 2}
    assert "fraud-check" not in [s.id for s in old.steps]
    assert [s.id for s in new.steps][:3] == ["charge", "@patch:fraud-check", "fraud-check"]


async def test_a_patch_keeps_answering_true_on_later_replays() -> None:
    app = tarry.App("sqlite:///:memory:")
    seen: list[bool] = []

    @app.workflow("w")
    async def w(ctx, step):
        seen.append(await step.patched("p"))
        await step.sleep("nap", "1h")
        seen.append(await step.patched("p"))  # the same patch: the same answer
        return "done"

    async with Environment(app, sticky=False) as env:  # every resume a replay
        run_id = await env.start("w")
        await env.advance("1h")
        assert await env.result(run_id) == "done"
        for bad in ("", None, 3):
            with pytest.raises(ValueError, match="patch id"):
                await step_patched(env, bad)
    assert seen == [True, True, True]  # the first execution, then the replay after the nap


async def step_patched(env: Environment, patch_id: object) -> None:
    app = env.app

    @app.workflow(f"bad-{type(patch_id).__name__}-{patch_id!s}")
    async def bad(ctx, step):
        await step.patched(patch_id)

    run_id = await env.start(f"bad-{type(patch_id).__name__}-{patch_id!s}")
    try:
        await env.result(run_id)
    except tarry.RunFailed as failed:
        raise ValueError(failed.error["message"]) from None


async def test_changing_code_after_the_wait_is_clean(database_url: str) -> None:
    calls: Counter[str] = Counter()
    run_id = await park_one(database_url, calls)
    v2 = tarry.App("sqlite:///:memory:", version="v2")

    @v2.workflow("order")
    async def order(ctx, step):
        await step.run("charge", lambda: "charge")
        decision = await step.wait_for_signal(
            "approval", signal=f"approve:{ctx.run_id}", timeout="7d"
        )
        await step.run("ship-faster", lambda: "new")  # changed after the wait
        return {"decision": decision, "v": 2}

    async with Environment(v2, database=database_url, start=LATER) as env:
        report = await env.app.check()
        assert report.passed(strict=True)
        assert report.summary() == {("order", "v1"): Counter({"ok": 1})}
        await env.send_signal(f"approve:{run_id}", {"ok": 1})
        assert await env.result(run_id) == {"decision": {"ok": 1}, "v": 2}


async def test_check_reports_what_breaks_and_writes_nothing(database_url: str) -> None:
    calls: Counter[str] = Counter()
    parked = await park_one(database_url, calls)
    async with Environment(tarry.App("sqlite:///:memory:", version="v1"),
                           database=database_url, start=LATER) as env:  # fmt: skip
        others = tarry.App("sqlite:///:memory:")

        @others.workflow("gone")
        async def gone(ctx, step):
            await step.sleep("s", "1d")

        gone_app = others._twin(database_url, env.clock)
        await gone_app.start("gone")
        await gone_app.close()
    v2 = tarry.App("sqlite:///:memory:", version="v2")

    def must_not_run() -> None:
        calls["v2 step"] += 1

    @v2.workflow("order")
    async def order(ctx, step):
        await step.run("new-first", must_not_run)  # inserted before the stored steps
        await step.run("charge", must_not_run)
        raise AssertionError("unreachable in a check: it stops at new-first")

    sqlite_file = database_url.removeprefix("sqlite:///") if "sqlite" in database_url else None
    watch = sqlite3.connect(sqlite_file) if sqlite_file else None
    async with Environment(v2, database=database_url, start=LATER) as env:
        env.mock_step("order", "new-first", side_effect=AssertionError("ran"))
        await env.run_until_idle()  # opening registers the workflows: a write of its own
        before_counts = row_counts(database_url)
        before_version = watch.execute("PRAGMA data_version").fetchone() if watch else None
        report = await env.app.check()
        assert row_counts(database_url) == before_counts
        if watch is not None:
            assert watch.execute("PRAGMA data_version").fetchone() == before_version
            watch.close()
        by_id = {r.run_id: r for r in report.runs}
        assert by_id[parked].verdict == "warning"
        assert by_id[parked].continues_at == "new-first"
        assert "'charge'" in by_id[parked].problems[0] and "inserted" in by_id[parked].problems[0]
        [unknown] = [r for r in report.runs if r.workflow == "gone"]
        assert unknown.verdict == "unknown" and "unknown workflow 'gone'" in unknown.problems[0]
        assert not report.passed() and report.passed(strict=False) is False
    assert calls["v2 step"] == 0


async def test_a_handler_that_raises_while_replaying_is_reported_with_its_traceback(
    database_url: str,
) -> None:
    calls: Counter[str] = Counter()
    run_id = await park_one(database_url, calls)
    v2 = tarry.App("sqlite:///:memory:", version="v2")

    @v2.workflow("order")
    async def order(ctx, step):
        charged = await step.run("charge", lambda: "charge")
        return charged["amount"]  # the stored result is a string: a TypeError

    async with Environment(v2, database=database_url, start=LATER) as env:
        report = await env.app.check()
    [found] = report.runs
    assert found.run_id == run_id and found.verdict == "error"
    assert "TypeError" in found.problems[0]
    assert found.traceback is not None and "in order" in found.traceback


async def test_versions_are_recorded_and_listed(database_url: str, monkeypatch) -> None:
    calls: Counter[str] = Counter()
    await park_one(database_url, calls)
    monkeypatch.setenv("TARRY_VERSION", "from-env")
    app = tarry.App("sqlite:///:memory:")

    @app.workflow("order")
    async def order(ctx, step):
        return 1

    async with Environment(app, database=database_url, start=LATER) as env:
        new = await env.start("order")
        assert (await env.get_run(new)).version == "from-env"
        v1 = await env.list_runs(version="v1")
        assert [r.version for r in v1.items] == ["v1"]
    monkeypatch.delenv("TARRY_VERSION")
    hashed = tarry.App("sqlite:///:memory:")

    @hashed.workflow("order")
    async def order2(ctx, step):
        return 2

    assert len(hashed.workflows.version_of("order") or "") == 12
    with pytest.raises(ValueError, match="version"):
        tarry.App("sqlite:///:memory:", version="")
