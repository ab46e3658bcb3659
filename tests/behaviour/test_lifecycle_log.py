"""The lifecycle log: one record per moment of a run, in order, with its fields.

Records go to the logger ``tarry.runs`` with ``event``, ``run_id``, ``workflow``,
``step`` and ``attempt`` as attributes; ``tarry.logs`` writes them as text or as
one JSON object per line.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import orjson
import pytest

import tarry
from tarry import logs, observe
from tarry.testing import Environment


def approval_app() -> tarry.App:
    app = tarry.App(database="sqlite:///:memory:", retry_base="1s", retry_cap="1s")

    async def reserve(order: int) -> str:
        return f"held-{order}"

    @app.workflow("approve-order")
    async def approve_order(ctx: tarry.Context, step: tarry.Step) -> dict[str, Any]:
        await step.run("reserve", reserve, ctx.payload["order"])
        decision = await step.wait_for_signal(
            "approval", signal=f"approval:{ctx.payload['order']}", timeout="7d"
        )
        return {"approved": decision["approved"]}

    attempts = {"n": 0}

    async def flaky() -> str:
        attempts["n"] += 1
        raise ConnectionError(f"partner down ({attempts['n']})")

    @app.workflow("flaky", retries=1)
    async def flaky_flow(ctx: tarry.Context, step: tarry.Step) -> None:
        await step.run("call-partner", flaky)

    return app


def moments(caplog: pytest.LogCaptureFixture, run_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tarry.runs" and r.run_id == run_id]  # type: ignore[attr-defined]


async def test_an_approval_run_logs_each_moment_in_order_with_its_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tarry.runs")
    async with Environment(approval_app(), sticky=False) as env:
        run_id = await env.start("approve-order", {"order": 7})
        await env.run_until_idle()
        await env.advance("1h")
        await env.send_signal("approval:7", {"approved": True})
        assert await env.result(run_id) == {"approved": True}
    records = moments(caplog, run_id)
    events = [r.event for r in records]  # type: ignore[attr-defined]
    assert events == [
        "started", "claimed", "step_completed", "parked",
        "claimed", "resumed", "completed",
    ]  # fmt: skip
    for record in records:
        assert record.workflow == "approve-order"  # type: ignore[attr-defined]
    by_event = {r.event: r for r in records}  # type: ignore[attr-defined]
    assert by_event["started"].by == "start"  # type: ignore[attr-defined]
    done = by_event["step_completed"]
    assert (done.step, done.attempt, done.levelno) == ("reserve", 1, logging.DEBUG)  # type: ignore[attr-defined]
    parked = by_event["parked"]
    assert parked.levelno == logging.INFO
    assert parked.step == "approval" and parked.wait == "signal 'approval:7'"  # type: ignore[attr-defined]
    assert parked.until.startswith("2030-01-08T00:00:00")  # type: ignore[attr-defined]
    assert "parked on signal 'approval:7' until 2030-01-08" in parked.getMessage()
    resumed = by_event["resumed"]
    assert (resumed.step, resumed.by) == ("approval", "signal")  # type: ignore[attr-defined]
    assert by_event["completed"].levelno == logging.INFO


async def test_a_resume_in_place_and_a_timeout_are_told_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tarry.runs")
    async with Environment(approval_app(), sticky=True) as env:
        run_id = await env.start("approve-order", {"order": 8})
        await env.run_until_idle()
        await env.advance("7d")
        with pytest.raises(tarry.RunFailed, match="NoneType"):  # it reads the timeout's None
            await env.result(run_id)
    records = moments(caplog, run_id)
    events = [r.event for r in records]  # type: ignore[attr-defined]
    assert events == ["started", "parked", "resumed", "failed"]
    assert records[2].by == "timeout"  # type: ignore[attr-defined]
    assert records[3].levelno == logging.WARNING and records[3].exc_info is not None


async def test_retries_and_the_failure_for_good_are_logged_with_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tarry.runs")
    async with Environment(approval_app()) as env:
        run_id = await env.start("flaky")
        await env.advance("10s")
        with pytest.raises(tarry.RunFailed):
            await env.result(run_id)
    records = moments(caplog, run_id)
    events = [r.event for r in records]  # type: ignore[attr-defined]
    assert events == ["started", "step_retrying", "step_failed", "failed"]
    retrying, failed_step, failed = records[1], records[2], records[3]
    assert (retrying.step, retrying.attempt) == ("call-partner", 1)  # type: ignore[attr-defined]
    assert 0.5 <= retrying.delay <= 1.0  # the 1 s backoff, with its jitter  # type: ignore[attr-defined]
    assert retrying.error == "ConnectionError: partner down (1)"  # type: ignore[attr-defined]
    assert failed_step.levelno == logging.WARNING and failed_step.attempt == 2  # type: ignore[attr-defined]
    assert failed_step.exc_info is not None and "partner down (2)" in failed_step.getMessage()
    assert failed.levelno == logging.WARNING
    assert failed.exc_info is None  # the step's traceback was told once, with the step


def test_json_lines_parse_and_carry_the_fields() -> None:
    out = io.StringIO()
    logs.configure("debug", "json", stream=out)
    try:
        observe.emit("parked", observe.INFO, "run r1 (w) parked", "r1", "w", step="s",
                     wait="signal 'k'", until=None)  # fmt: skip
        try:
            raise ValueError("boom")
        except ValueError as exc:
            observe.emit("failed", observe.WARNING, "run r1 (w) failed", "r1", "w", exc=exc)
        logging.getLogger("tarry").info("plain %s", "line")
    finally:
        logging.getLogger("tarry").handlers.clear()
        logging.getLogger("tarry").propagate = True
        logging.getLogger("tarry").setLevel(logging.NOTSET)
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [
        "run r1 (w) parked", "run r1 (w) failed", "plain line",
    ]  # fmt: skip
    first = lines[0]
    assert first["event"] == "parked" and first["run_id"] == "r1" and first["workflow"] == "w"
    assert first["step"] == "s" and first["attempt"] is None and first["wait"] == "signal 'k'"
    assert first["level"] == "info" and first["logger"] == "tarry.runs"
    assert "ValueError: boom" in lines[1]["traceback"]
    assert "run_id" not in lines[2]


def test_configure_refuses_a_bad_level_or_format() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logs.configure("loud")
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        logs.configure("info", "xml")


def test_a_listener_hears_every_moment_and_its_fault_stops_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    heard: list[observe.Moment] = []

    def broken(moment: observe.Moment) -> None:
        raise RuntimeError("listener bug")

    observe.add_listener(heard.append)
    observe.add_listener(broken)
    try:
        with Environment(approval_app()) as env:
            run_id = env.start_sync("approve-order", {"order": 9})
            env.run_until_idle_sync()
            env.send_signal_sync("approval:9", {"approved": False})
            assert env.result_sync(run_id) == {"approved": False}
    finally:
        observe.remove_listener(heard.append)
        observe.remove_listener(broken)
    kinds = [m.kind for m in heard if m.run_id == run_id]
    assert kinds[0] == "started" and kinds[-1] == "completed" and "resumed" in kinds
    assert any("listener bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)


async def test_a_child_run_and_a_cancel_are_told(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tarry.runs")
    app = approval_app()

    @app.workflow("parent")
    async def parent(ctx: tarry.Context, step: tarry.Step) -> Any:
        return await step.invoke("child", "approve-order", {"order": 11})

    async with Environment(app) as env:
        run_id = await env.start("parent")
        await env.run_until_idle()
        await env.cancel(run_id, "changed our mind")
    started = [r for r in caplog.records if getattr(r, "event", None) == "started"]
    child = next(r for r in started if r.by == "invoke")  # type: ignore[attr-defined]
    assert child.parent == run_id and child.workflow == "approve-order"  # type: ignore[attr-defined]
    cancelled = [r for r in caplog.records if getattr(r, "event", None) == "cancelled"]
    assert [r.run_id for r in cancelled] == [run_id]  # type: ignore[attr-defined]
    assert cancelled[0].reason == "changed our mind"  # type: ignore[attr-defined]


async def test_runs_started_and_cancelled_by_an_event_are_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tarry.runs")
    app = approval_app()

    @app.workflow(
        "onboard", on=["user/created"], cancel_on=[tarry.cancel_on("user/deleted", match="data.id")]
    )
    async def onboard(ctx: tarry.Context, step: tarry.Step) -> None:
        await step.sleep("drip", "7d")

    async with Environment(app) as env:
        sent = await env.send_event("user/created", {"id": "u1"})
        await env.run_until_idle()
        gone = await env.send_event("user/deleted", {"id": "u1"})
    run_id = sent.started[0]
    records = moments(caplog, run_id)
    assert [r.event for r in records] == ["started", "parked", "cancelled"]  # type: ignore[attr-defined]
    told = [(r.event, r.by, r.event_id) for r in (records[0], records[2])]  # type: ignore[attr-defined]
    assert told == [
        ("started", "event", sent.event_ids[0]),
        ("cancelled", "event", gone.event_ids[0]),
    ]
