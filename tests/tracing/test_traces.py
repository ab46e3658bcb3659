"""OpenTelemetry spans, checked with the SDK's in-memory exporter: a span per
attempt, per step execution and per wait; the context of the code that starts a
run or sends what resumes it is stored with what it sends, and the resumed run's
spans link to it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import tarry
from tarry import tracing
from tarry.testing import Environment

HOUR = 3600 * 10**9


def approval_app() -> tarry.App:
    app = tarry.App(retry_base="1s", retry_cap="1s")

    async def reserve(order: int) -> str:
        return f"held-{order}"

    @app.workflow("approve-order")
    async def approve_order(ctx: tarry.Context, step: tarry.Step) -> dict[str, Any]:
        await step.run("reserve", reserve, ctx.payload["order"])
        decision = await step.wait_for_signal(
            "approval", signal=f"approval:{ctx.payload['order']}", timeout="7d"
        )
        await step.run("ship", reserve, ctx.payload["order"])
        return {"approved": decision["approved"]}

    async def broken() -> None:
        raise ValueError("no stock")

    @app.workflow("broken", retries=0)
    async def broken_flow(ctx: tarry.Context, step: tarry.Step) -> None:
        await step.run("call", broken)

    @app.workflow("agent")
    async def agent(ctx: tarry.Context, step: tarry.Step) -> str:
        message = await step.wait_for_message("ask", timeout="1d")
        found = await step.wait_for_event("paid", event="paid", match="data.order", timeout="1d")
        assert message is not None and found is not None
        return str(message.data["text"])

    @app.workflow("on-paid", on="paid")
    async def on_paid(ctx: tarry.Context, step: tarry.Step) -> int:
        return int(ctx.payload["order"])

    return app


def named(found: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in found if span.name == name]


def one(found: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    matching = named(found, name)
    assert len(matching) == 1, [span.name for span in found]
    return matching[0]


def linked_to(span: ReadableSpan, target: ReadableSpan) -> bool:
    assert target.context is not None
    return any(
        link.context.trace_id == target.context.trace_id
        and link.context.span_id == target.context.span_id
        for link in span.links
    )


@pytest.mark.parametrize("sticky", [True, False], ids=["sticky", "replay"])
async def test_an_approval_run_is_one_trace_linked_to_the_click_that_resumed_it(
    spans: InMemorySpanExporter, database_url: str, sticky: bool
) -> None:
    tracer = trace.get_tracer("the-shop")
    async with Environment(approval_app(), database=database_url, sticky=sticky) as env:
        with tracer.start_as_current_span("POST /orders"):
            run_id = await env.start("approve-order", {"order": 7})
        await env.run_until_idle()
        await env.advance("3h")
        with tracer.start_as_current_span("POST /approve"):
            await env.send_signal("approval:7", {"approved": True})
        assert await env.result(run_id) == {"approved": True}
    found = spans.get_finished_spans()

    request, start = one(found, "POST /orders"), one(found, "tarry start")
    assert start.kind is SpanKind.PRODUCER and start.parent is not None
    assert start.parent.span_id == request.context.span_id
    assert start.attributes is not None and start.attributes["tarry.workflow"] == "approve-order"

    first, second = named(found, "run approve-order")
    for attempt in (first, second):  # the run stays in the trace of the code that started it
        assert attempt.context.trace_id == start.context.trace_id
        assert attempt.parent is not None and attempt.parent.span_id == start.context.span_id
        assert attempt.attributes is not None and attempt.attributes["tarry.run_id"] == run_id
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes["tarry.outcome"] == "parked"
    assert second.attributes["tarry.outcome"] == "completed"
    assert second.status.status_code is StatusCode.UNSET

    reserve, ship = one(found, "step reserve"), one(found, "step ship")
    assert reserve.parent is not None and reserve.parent.span_id == first.context.span_id
    assert ship.parent is not None and ship.parent.span_id == second.context.span_id

    click, send = one(found, "POST /approve"), one(found, "tarry send_signal")
    assert send.parent is not None and send.parent.span_id == click.context.span_id
    assert send.context.trace_id != start.context.trace_id  # the click is a trace of its own
    wait = one(found, "wait signal")
    assert wait.parent is not None and wait.parent.span_id == second.context.span_id
    assert linked_to(wait, send) and linked_to(second, send)
    assert wait.attributes is not None
    assert wait.attributes["tarry.wait.woken_by"] == "signal"
    assert wait.attributes["tarry.step"] == "approval"
    assert "approval:7" in str(wait.attributes["tarry.wait.condition"])
    assert wait.start_time is not None and wait.end_time is not None
    assert wait.end_time - wait.start_time == 3 * HOUR  # from the park to the click


async def test_a_failing_step_and_its_run_record_the_error(
    spans: InMemorySpanExporter, database_url: str
) -> None:
    async with Environment(approval_app(), database=database_url) as env:
        run_id = await env.start("broken")
        with pytest.raises(tarry.RunFailed):
            await env.result(run_id)
    found = spans.get_finished_spans()
    step = one(found, "step call")
    assert step.status.status_code is StatusCode.ERROR
    assert [event.name for event in step.events] == ["exception"]
    attempt = one(found, "run broken")
    assert attempt.status.status_code is StatusCode.ERROR
    assert "no stock" in str(attempt.status.description)
    assert attempt.attributes is not None and attempt.attributes["tarry.outcome"] == "failed"
    start = one(found, "tarry start")  # no span around it: the root of a trace of its own
    assert start.parent is None
    assert attempt.parent is not None and attempt.parent.span_id == start.context.span_id


async def test_messages_and_events_carry_their_senders_context(
    spans: InMemorySpanExporter, database_url: str
) -> None:
    tracer = trace.get_tracer("the-shop")
    async with Environment(approval_app(), database=database_url) as env:
        run_id = await env.start("agent", {"order": 7}, run_id="agent-1")
        await env.run_until_idle()
        with tracer.start_as_current_span("chat message"):
            await env.send_message(run_id, "ask", {"text": "hello"})
        await env.run_until_idle()
        with tracer.start_as_current_span("payment webhook"):
            sent = await env.send_event("paid", {"order": 7})
        assert await env.result(run_id) == "hello"
        assert await env.result(sent.started[0]) == 7
    found = spans.get_finished_spans()
    message, event = one(found, "tarry send_message"), one(found, "tarry send_event")
    assert linked_to(one(found, "wait message"), message)
    assert linked_to(one(found, "wait event"), event)
    started = one(found, "run on-paid")  # a run an event starts is in the sender's trace
    assert started.parent is not None and started.parent.span_id == event.context.span_id


async def test_a_step_that_sends_passes_its_runs_context_on(
    spans: InMemorySpanExporter, database_url: str
) -> None:
    app = approval_app()

    @app.workflow("approver")
    async def approver(ctx: tarry.Context, step: tarry.Step) -> None:
        await step.send_signal("approve", "approval:9", {"approved": False})

    async with Environment(app, database=database_url) as env:
        waiting = await env.start("approve-order", {"order": 9})
        await env.run_until_idle()
        await env.start("approver")
        assert await env.result(waiting) == {"approved": False}
    found = spans.get_finished_spans()
    sender = one(found, "run approver")
    assert linked_to(one(found, "wait signal"), sender)


async def test_without_a_configured_provider_nothing_is_traced(database_url: str) -> None:
    assert tracing.tracer() is None  # the API's own provider makes no-op spans
    async with Environment(approval_app(), database=database_url) as env:
        run_id = await env.start("approve-order", {"order": 1})
        await env.run_until_idle()
        await env.send_signal("approval:1", {"approved": True})
        assert await env.result(run_id) == {"approved": True}
        stored = await env.app.get_run(run_id)
    assert stored.status == "completed"


def test_traceparent_text_round_trips_and_junk_is_ignored(spans: InMemorySpanExporter) -> None:
    with trace.get_tracer("t").start_as_current_span("outer") as span:
        text = tracing.traceparent(span.get_span_context())
    assert text is not None
    parsed = tracing.parse(text)
    assert parsed is not None and parsed.span_id == span.get_span_context().span_id
    assert parsed.is_remote
    for junk in ("", "00-zz", "01-" + "a" * 32 + "-" + "b" * 16 + "-01",
                 "00-" + "0" * 32 + "-" + "b" * 16 + "-01"):  # fmt: skip
        assert tracing.parse(junk) is None


async def test_completing_a_callback_token_links_the_resumed_run_to_the_completer(
    spans: InMemorySpanExporter, database_url: str
) -> None:
    app = approval_app()
    made: list[tarry.Token] = []

    @app.workflow("contract")
    async def contract(ctx: tarry.Context, step: tarry.Step) -> Any:
        token = await step.create_token("contract-signed", timeout="14d")
        await step.run("mail", lambda: made.append(token) or "sent")
        return await step.wait_for_token(token)

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("contract")
        await env.run_until_idle()
        with trace.get_tracer("the-shop").start_as_current_span("POST /api/v1/tokens/{id}"):
            await env.app.complete_token(made[0].id, {"signed": True})
        assert await env.result(run_id) == {"signed": True}
    found = spans.get_finished_spans()
    completed = one(found, "tarry complete_token")
    assert completed.attributes is not None and completed.attributes["tarry.token"] == made[0].id
    wait = one(found, "wait token")
    assert linked_to(wait, completed)
    assert wait.attributes is not None and wait.attributes["tarry.wait.woken_by"] == "token"
