"""Typed waits (``schema=``): data checked where it is sent, the model returned.

Every test runs on SQLite and on PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel, Field

import tarry
from tarry.testing import Environment, NotEnded
from tarry.wait_schema import is_approval

from helpers import step, wait_for_status

NOTE = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1}, "stars": {"enum": [1, 2, 3]}},
    "required": ["text"],
    "additionalProperties": False,
}


class Refund(BaseModel):
    amount: int = Field(gt=0)
    reason: str


def approval_workflow(app: tarry.App) -> None:
    @app.workflow("approve")
    async def approve(ctx, step):
        decision = await step.wait_for_signal(
            "decide", signal=f"approval:{ctx.payload['order']}", timeout="1d",
            schema=tarry.Approval,
        )  # fmt: skip
        if decision is None:
            return "timed out"
        return [type(decision).__name__, decision.approved, decision.by, decision.comment]

    @app.workflow("probe")  # an untyped wait: takes whatever is buffered on the key
    async def probe(ctx, step):
        found = await step.wait_for_signal("look", signal=ctx.payload["key"], timeout="1s")
        return {"found": found}


async def test_a_valid_signal_resumes_the_run_with_a_model_instance(app, database_url) -> None:
    approval_workflow(app)
    async with Environment(app, database=database_url) as env:
        run_id = await env.start("approve", {"order": 1})
        waiting = await env.waiting(run_id)
        assert waiting is not None and waiting.kind == "signal"
        assert waiting.schema == tarry.Approval.model_json_schema()
        assert is_approval(waiting.schema)
        sent = await env.send_signal("approval:1", {"approved": True, "by": "ana"})
        assert sent == tarry.SignalResult("delivered", run_id)
        assert await env.result(run_id) == ["Approval", True, "ana", None]
        run = await env.get_run(run_id)
        assert step(run, "decide").output == {"approved": True, "by": "ana"}


async def test_an_invalid_signal_is_refused_and_nothing_is_stored(app, database_url) -> None:
    approval_workflow(app)
    async with Environment(app, database=database_url) as env:
        run_id = await env.start("approve", {"order": 2})
        await env.run_until_idle()
        before = await env.get_run(run_id)
        with pytest.raises(tarry.PayloadInvalid) as caught:
            await env.send_signal("approval:2", {"approved": "yes", "comment": 5})
        assert caught.value.errors == [
            tarry.Violation("$.by", "is required"),
            tarry.Violation("$.approved", "should be a boolean, got string"),
            tarry.Violation("$.comment", "should be a string or null, got integer"),
        ]
        assert isinstance(caught.value, ValueError)
        assert "approval:2" in str(caught.value) and run_id in str(caught.value)
        after = await env.get_run(run_id)
        assert after.status == "waiting" and after.waiting_for == before.waiting_for
        assert [(s.id, s.status, s.output) for s in after.steps] == [("decide", "waiting", None)]
        # Nothing was buffered either: the valid signal is the one the run gets, and
        # once it ended, an untyped wait on the key finds nothing.
        await env.send_signal("approval:2", {"approved": False, "by": "bo", "comment": "no"})
        assert await env.result(run_id) == ["Approval", False, "bo", "no"]
        probe = await env.start("probe", {"key": "approval:2"})
        await env.advance("2s")
        assert await env.result(probe) == {"found": None}


async def test_a_dict_schema_returns_the_data(app, database_url) -> None:
    @app.workflow("notes")
    async def notes(ctx, step):
        message = await step.wait_for_message("note", name="note", schema=NOTE, timeout=None)
        return [message.name, message.data]

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("notes")
        waiting = await env.waiting(run_id)
        assert waiting is not None and waiting.schema == NOTE and not is_approval(NOTE)
        with pytest.raises(tarry.PayloadInvalid) as caught:
            await env.send_message(run_id, "note", {"text": "", "stars": 5, "x": 1})
        assert [tuple(e) for e in caught.value.errors] == [
            ("$.text", "should have at least 1 characters, has 0"),
            ("$.stars", "should be one of 1, 2, 3, got 5"),
            ("$.x", "is not an allowed property"),
        ]
        run = await env.get_run(run_id)
        assert run.status == "waiting" and run.messages == []  # not even queued
        # Another name is not for this wait: queued, unchecked.
        await env.send_message(run_id, "other", {"anything": True})
        await env.send_message(run_id, "note", {"text": "fine", "stars": 2})
        assert await env.result(run_id) == ["note", {"text": "fine", "stars": 2}]
        run = await env.get_run(run_id)
        assert [(m.name, m.consumed_by) for m in run.messages] == [
            ("other", None),
            ("note", "note"),
        ]


async def test_a_replay_returns_the_model_again(make_app) -> None:
    seen: list[str] = []

    def register(app: tarry.App) -> None:
        @app.workflow("refund")
        async def refund(ctx, step):
            asked = await step.wait_for_signal(
                "ask", signal="refund:1", timeout=None, schema=Refund
            )
            seen.append(type(asked).__name__)
            await step.wait_for_signal("go", signal="go:1", timeout=None)
            return asked.amount

    first = make_app()
    register(first)
    async with first.worker():
        run_id = await first.start("refund")
        await _until(first, run_id, "waiting")
        await first.send_signal("refund:1", {"amount": 30, "reason": "late"})
        await _until(first, run_id, "waiting", step_count=2)
    first.close_sync()
    second = make_app()  # a new process: the run replays from the store
    register(second)
    async with second.worker():
        await second.send_signal("go:1", {})
        assert await second.result(run_id, timeout=10) == 30
    assert seen == ["Refund", "Refund"]


async def _until(app: tarry.App, run_id: str, status: str, step_count: int = 1) -> None:
    """Until the run is ``status`` with at least ``step_count`` steps recorded."""
    for _ in range(500):
        run = await wait_for_status(app, run_id, status)
        if len(run.steps) >= step_count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"run {run_id} never reached {step_count} steps")


async def test_wait_for_any_with_typed_conditions(app, database_url) -> None:
    @app.workflow("either")
    async def either(ctx, step):
        woken = await step.wait_for_any(
            "first",
            [tarry.signal("refund:any", schema=Refund), tarry.message("note", schema=NOTE)],
            timeout=None,
        )
        value = woken.value
        if isinstance(value, tarry.Message):
            return [woken.index, value.name, value.data]
        return [woken.index, type(value).__name__, value.amount]

    async with Environment(app, database=database_url) as env:
        first = await env.start("either")
        waiting = await env.waiting(first)
        assert waiting is not None and waiting.schema is None
        assert waiting.schemas == [Refund.model_json_schema(), NOTE]
        with pytest.raises(tarry.PayloadInvalid, match=r"\$\.amount: should be above 0"):
            await env.send_signal("refund:any", {"amount": 0, "reason": "x"})
        with pytest.raises(tarry.PayloadInvalid, match=r"\$\.text: is required"):
            await env.send_message(first, "note", {})
        assert (await env.get_run(first)).status == "waiting"
        await env.send_signal("refund:any", {"amount": 5, "reason": "x"})
        assert await env.result(first) == [0, "Refund", 5]

        second = await env.start("either")
        await env.run_until_idle()
        await env.send_message(second, "note", {"text": "hi"})
        assert await env.result(second) == [1, "note", {"text": "hi"}]


async def test_a_message_fitting_another_condition_goes_there(app, database_url) -> None:
    @app.workflow("sorter")
    async def sorter(ctx, step):
        woken = await step.wait_for_any(
            "sort", [tarry.message(schema=NOTE), tarry.message()], timeout=None
        )
        return [woken.index, woken.value.data]

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("sorter")
        await env.run_until_idle()
        await env.send_message(run_id, "m", {"free": "form"})  # the untyped one takes it
        assert await env.result(run_id) == [1, {"free": "form"}]


async def test_data_sent_before_the_wait_that_does_not_fit_is_left_where_it_is(
    app, database_url
) -> None:
    """A buffered signal or queued message had no sender to refuse: a typed wait
    takes the oldest that fits and leaves the others, as a name filter does."""
    approval_workflow(app)

    @app.workflow("inbox")
    async def inbox(ctx, step):
        await step.wait_for_signal("gate", signal=f"gate:{ctx.run_id}", timeout=None)
        typed = await step.wait_for_message("typed", schema=NOTE, timeout="1h")
        rest = await step.wait_for_message("rest", timeout=None)
        return [typed.data if typed else None, rest.data]

    async with Environment(app, database=database_url) as env:
        junk = {"approved": "maybe"}
        assert (await env.send_signal("approval:9", junk)).status == "buffered"
        good = {"approved": True, "by": "cy"}
        assert (await env.send_signal("approval:9", good)).status == "buffered"
        run_id = await env.start("approve", {"order": 9})
        assert await env.result(run_id) == ["Approval", True, "cy", None]
        probe = await env.start("probe", {"key": "approval:9"})  # the junk is still there
        assert await env.result(probe) == {"found": junk}

        lonely = await env.start("approve", {"order": 10})
        assert (await env.send_signal("approval:10", junk)).status == "buffered"  # no wait yet
        await env.run_until_idle()
        assert (await env.get_run(lonely)).status == "waiting"  # and the wait leaves it

        box = await env.start("inbox")
        await env.run_until_idle()
        await env.send_message(box, "n", {"text": 7})  # queued: the run waits on the gate
        await env.send_signal(f"gate:{box}", {})
        await env.run_until_idle()
        run = await env.get_run(box)
        assert run.status == "waiting" and run.waiting_for.step == "typed"
        assert [(m.data, m.consumed_by) for m in run.messages] == [({"text": 7}, None)]
        await env.send_message(box, "n", {"text": "ok"})
        assert await env.result(box) == [{"text": "ok"}, {"text": 7}]


async def test_a_step_send_to_a_typed_wait_is_refused_the_same_on_replay(app, database_url) -> None:
    approval_workflow(app)
    attempts: list[str] = []

    @app.workflow("sender")
    async def sender(ctx, step):
        try:
            await step.send_signal("tell", "approval:5", {"approved": 1})
        except tarry.PayloadInvalid as exc:
            attempts.append(str(exc))
            await step.sleep("pause", "1m")  # parks: the next resume replays the send
            return [[e.path, e.message] for e in exc.errors]
        return "sent"

    async with Environment(app, database=database_url, sticky=False) as env:
        target = await env.start("approve", {"order": 5})
        await env.run_until_idle()
        run_id = await env.start("sender")
        await env.advance("2m")
        assert await env.result(run_id) == [
            ["$.by", "is required"],
            ["$.approved", "should be a boolean, got integer"],
        ]
        assert len(attempts) == 2 and attempts[0] == attempts[1]
        tell = step(await env.get_run(run_id), "tell")
        assert tell.status == "failed" and tell.error["type"] == "PayloadInvalid"
        assert (await env.get_run(target)).status == "waiting"


@pytest.mark.parametrize(
    ("schema", "said"),
    [
        ("approval", "takes a pydantic model class or a JSON Schema dict, got str 'approval'"),
        (tarry.Approval(approved=True, by="x"), "got an instance of Approval"),
        ({"type": "object", "if": {}}, "uses 'if', which tarry does not check"),
    ],
)
async def test_a_schema_that_is_not_one_is_a_config_error_at_the_wait(
    app, schema: Any, said: str
) -> None:
    @app.workflow("bad")
    async def bad(ctx, step):
        await step.wait_for_signal("w", signal="k", timeout=None, schema=schema)

    async with Environment(app) as env:
        run_id = await env.start("bad")
        with pytest.raises(tarry.RunFailed) as caught:
            await env.result(run_id)
        assert caught.value.error["type"] == "ConfigError"
        assert said in caught.value.error["message"]
        assert "signal 'k' schema=" in caught.value.error["message"]
    with pytest.raises(tarry.ConfigError, match=said.replace("(", r"\(").replace(")", r"\)")):
        tarry.message("m", schema=schema)


async def test_a_timed_out_typed_wait_returns_none(app) -> None:
    approval_workflow(app)
    async with Environment(app) as env:
        run_id = await env.start("approve", {"order": 3})
        await env.advance("23h")
        with pytest.raises(NotEnded):
            await env.result(run_id)
        await env.advance("1h")
        assert await env.result(run_id) == "timed out"


async def test_wait_for_all_returns_each_typed_value(app, database_url) -> None:
    @app.workflow("both")
    async def both(ctx, step):
        refund, note = await step.wait_for_all(
            "both",
            [tarry.signal("refund:all", schema=Refund), tarry.message("note", schema=NOTE)],
            timeout=None,
        )
        return [type(refund).__name__, refund.reason, note.data]

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("both")
        await env.run_until_idle()
        await env.send_signal("refund:all", {"amount": 3, "reason": "dent"})
        with pytest.raises(tarry.PayloadInvalid):
            await env.send_message(run_id, "note", {"text": ""})
        await env.send_message(run_id, "note", {"text": "ok"})
        assert await env.result(run_id) == ["Refund", "dent", {"text": "ok"}]


async def test_the_sync_twin_raises_the_same(app) -> None:
    approval_workflow(app)
    async with app.worker():
        run_id = await app.start("approve", {"order": 7})
        await wait_for_status(app, run_id, "waiting")
        with pytest.raises(tarry.PayloadInvalid, match=r"\$\.by: is required"):
            await asyncio.to_thread(app.send_signal_sync, "approval:7", {"approved": True})
        assert (await app.get_run(run_id)).status == "waiting"
