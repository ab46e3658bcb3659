"""Typed waits over the API, on SQLite and PostgreSQL: a signal or message whose data
does not fit the wait's schema is a 422 listing each violation, nothing stored; a
parked run shows the schema it waits for; the document declares the 422."""

from __future__ import annotations

from collections.abc import Callable

import tarry

from .conftest import asgi_client, wait_run

NOTE = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


def typed_flows(app: tarry.App) -> tarry.App:
    @app.workflow("typed-approval")
    async def approval(ctx, step):
        decision = await step.wait_for_signal(
            "decide", signal=f"decide:{ctx.run_id}", timeout=None, schema=tarry.Approval
        )
        return {"approved": decision.approved, "by": decision.by}

    @app.workflow("typed-note")
    async def note(ctx, step):
        message = await step.wait_for_message("note", name="note", timeout=None, schema=NOTE)
        return message.data

    return app


async def test_an_invalid_signal_is_a_422_with_its_errors(
    make_app: Callable[..., tarry.App],
) -> None:
    app = typed_flows(make_app())
    async with app.worker(), asgi_client(app) as client:
        run_id = await app.start("typed-approval")
        parked = await wait_run(client, run_id, "waiting")
        assert parked["waiting_for"]["schema"] == tarry.Approval.model_json_schema()
        assert parked["waiting_for"]["schemas"] == []

        refused = await client.post(
            "/api/v1/signals", json={"signal": f"decide:{run_id}", "data": {"approved": "y"}}
        )
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["type"] == "PayloadInvalid"
        assert f"decide:{run_id}" in error["message"]
        assert error["errors"] == [
            {"path": "$.by", "message": "is required"},
            {"path": "$.approved", "message": "should be a boolean, got string"},
        ]
        still = await wait_run(client, run_id, "waiting")
        assert [(s["id"], s["status"]) for s in still["steps"]] == [("decide", "waiting")]

        sent = await client.post(
            "/api/v1/signals",
            json={"signal": f"decide:{run_id}", "data": {"approved": True, "by": "ana"}},
        )
        assert sent.status_code == 200 and sent.json()["status"] == "delivered"
        done = await wait_run(client, run_id, "completed")
        assert done["output"] == {"approved": True, "by": "ana"}


async def test_an_invalid_message_is_a_422_and_is_not_queued(
    make_app: Callable[..., tarry.App],
) -> None:
    app = typed_flows(make_app())
    async with app.worker(), asgi_client(app) as client:
        run_id = await app.start("typed-note")
        await wait_run(client, run_id, "waiting")
        refused = await client.post(
            f"/api/v1/runs/{run_id}/messages", json={"name": "note", "data": {"text": 3}}
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["errors"] == [
            {"path": "$.text", "message": "should be a string, got integer"}
        ]
        assert (await app.get_run(run_id)).messages == []
        sent = await client.post(
            f"/api/v1/runs/{run_id}/messages", json={"name": "note", "data": {"text": "hi"}}
        )
        assert sent.status_code == 202
        assert (await wait_run(client, run_id, "completed"))["output"] == {"text": "hi"}


async def test_the_document_declares_the_422_with_its_errors(
    make_app: Callable[..., tarry.App],
) -> None:
    app = typed_flows(make_app())
    async with asgi_client(app) as client:
        spec = (await client.get("/api/v1/openapi.json")).json()
    for path in ("/api/v1/signals", "/api/v1/runs/{run_id}/messages"):
        declared = spec["paths"][path]["post"]["responses"]["422"]
        assert "PayloadInvalid" in declared["description"]
        assert declared["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    detail = spec["components"]["schemas"]["ErrorDetail"]  # one error shape for the API
    assert set(detail["properties"]) == {"type", "message", "errors"}
    waiting = spec["components"]["schemas"]["WaitingForOut"]["properties"]
    assert "schema" in waiting and "schemas" in waiting
