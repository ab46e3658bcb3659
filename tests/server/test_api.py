"""Every /api/v1 route: success, each error status and the one error shape."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import tarry

from .conftest import TOKEN, wait_run


def assert_error(response: httpx.Response, status: int, type_: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if type_ is not None:
        assert body["error"]["type"] == type_
    message: str = body["error"]["message"]
    return message


async def start(client: httpx.AsyncClient, workflow: str, payload: Any = None, **kw: Any) -> str:
    response = await client.post(
        "/api/v1/runs", json={"workflow": workflow, "payload": payload}, **kw
    )
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run_id"]
    return run_id


# -- POST /runs -------------------------------------------------------------------------


async def test_start_returns_201_and_the_run_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/runs", json={"workflow": "quick", "payload": {"n": 1}})
    assert response.status_code == 201
    run_id = response.json()["run_id"]
    run = await wait_run(client, run_id, "completed")
    assert run["output"] == {"n": 1}
    assert run["workflow"] == "quick"


async def test_start_is_idempotent_on_run_id(client: httpx.AsyncClient) -> None:
    body = {"workflow": "quick", "payload": {"n": 1}, "run_id": "order-7"}
    first = await client.post("/api/v1/runs", json=body)
    again = await client.post("/api/v1/runs", json={**body, "payload": {"n": 2}})
    assert first.json() == again.json() == {"run_id": "order-7"}
    run = await wait_run(client, "order-7", "completed")
    assert run["output"] == {"n": 1}


async def test_start_unknown_workflow_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/runs", json={"workflow": "nope"})
    assert "'nope'" in assert_error(response, 404, "WorkflowNotFound")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"workflow": 5},
        {"workflow": ""},
        {"workflow": "quick", "run_id": 7},
        {"workflow": "quick", "surprise": True},
        [],
        "quick",
        None,
    ],
)
async def test_start_with_bad_fields_is_422(client: httpx.AsyncClient, body: Any) -> None:
    raw = json.dumps(body).encode()
    response = await client.post(
        "/api/v1/runs", content=raw, headers={"content-type": "application/json"}
    )
    assert_error(response, 422, "ValidationError")


@pytest.mark.parametrize("raw", [b"{bad", b"", b'{"workflow": "quick",}', b"\xff\xfe"])
async def test_malformed_json_is_400(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(
        "/api/v1/runs", content=raw, headers={"content-type": "application/json"}
    )
    if raw == b"":
        assert_error(response, 422)
    else:
        assert_error(response, 400, "InvalidJSON")


async def test_a_body_that_is_not_json_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/runs", content=b"workflow=quick")
    assert_error(response, 415, "UnsupportedMediaType")
    response = await client.post(
        "/api/v1/signals", data={"signal": "k"}, headers={"content-type": "text/plain"}
    )
    assert_error(response, 415)


# -- GET /runs and /runs/{id} -----------------------------------------------------------


async def test_list_filters_and_pages(client: httpx.AsyncClient) -> None:
    quick = [await start(client, "quick", {"n": n}) for n in range(3)]
    parked = await start(client, "approval", {"order": "list-1"})
    await wait_run(client, parked, "waiting")
    for run_id in quick:
        await wait_run(client, run_id, "completed")

    everything = (await client.get("/api/v1/runs")).json()
    assert [r["id"] for r in everything["items"]] == [parked, *reversed(quick)]
    assert everything["next_cursor"] is None
    assert all(r["steps"] is None for r in everything["items"])

    waiting = (await client.get("/api/v1/runs", params={"status": "waiting"})).json()
    assert [r["id"] for r in waiting["items"]] == [parked]
    assert waiting["items"][0]["waiting_for"]["key"] == "approval:list-1"

    by_workflow = (await client.get("/api/v1/runs", params={"workflow": "quick"})).json()
    assert {r["id"] for r in by_workflow["items"]} == set(quick)

    first = (await client.get("/api/v1/runs", params={"limit": 2})).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = await client.get("/api/v1/runs", params={"limit": 2, "cursor": first["next_cursor"]})
    ids = [r["id"] for r in first["items"] + rest.json()["items"]]
    assert ids == [parked, *reversed(quick)]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "sleeping"},
        {"limit": 0},
        {"limit": 1001},
        {"limit": "many"},
        {"cursor": "abc"},
    ],
)
async def test_list_with_bad_parameters_is_422(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    assert_error(await client.get("/api/v1/runs", params=params), 422, "ValidationError")


async def test_get_run_has_steps_and_what_it_waits_for(client: httpx.AsyncClient) -> None:
    run_id = await start(client, "approval", {"order": "get-1"})
    run = await wait_run(client, run_id, "waiting")
    assert run["waiting_for"]["kind"] == "signal"
    assert run["waiting_for"]["key"] == "approval:get-1"
    assert run["waiting_for"]["step"] == "wait-approval"
    assert run["waiting_for"]["expires_at"].startswith("20")
    prepare = run["steps"][0]
    assert prepare["id"] == "prepare" and prepare["status"] == "completed"
    assert prepare["output"] == {"order": "get-1"}
    assert prepare["attempts"] == 1
    assert set(prepare) == {
        "id",
        "kind",
        "status",
        "output",
        "error",
        "attempts",
        "started_at",
        "ended_at",
        "failed_attempts",
    }
    assert prepare["failed_attempts"] == []
    assert run["failed_attempts"] == [] and run["changes"] == [] and run["forked_from"] is None


async def test_get_unknown_run_is_404(client: httpx.AsyncClient) -> None:
    message = assert_error(await client.get("/api/v1/runs/missing"), 404, "RunNotFound")
    assert "'missing'" in message


# -- POST /runs/{id}/cancel ---------------------------------------------------------------


async def test_cancel_a_parked_run(client: httpx.AsyncClient) -> None:
    run_id = await start(client, "approval", {"order": "cancel-1"})
    await wait_run(client, run_id, "waiting")
    response = await client.post(f"/api/v1/runs/{run_id}/cancel", json={"reason": "changed mind"})
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "cancelled"
    assert run["error"]["message"] == "changed mind"
    assert run["waiting_for"] is None
    # an ended run: a no-op, still 200, and no body is needed
    again = await client.post(f"/api/v1/runs/{run_id}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


async def test_cancel_errors(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/api/v1/runs/missing/cancel"), 404, "RunNotFound")
    run_id = await start(client, "approval", {"order": "cancel-2"})
    response = await client.post(f"/api/v1/runs/{run_id}/cancel", json={"reason": 5})
    assert_error(response, 422)


# -- POST /runs/{id}/messages -------------------------------------------------------------


async def test_message_resumes_the_run(client: httpx.AsyncClient) -> None:
    run_id = await start(client, "inbox")
    await wait_run(client, run_id, "waiting")
    response = await client.post(
        f"/api/v1/runs/{run_id}/messages", json={"name": "decision", "data": {"ok": True}}
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"run_id": run_id, "name": "decision"}
    run = await wait_run(client, run_id, "completed")
    assert run["output"] == {"ok": True}


async def test_message_errors(client: httpx.AsyncClient) -> None:
    missing = await client.post("/api/v1/runs/missing/messages", json={"name": "x"})
    assert_error(missing, 404, "RunNotFound")
    run_id = await start(client, "quick", {})
    await wait_run(client, run_id, "completed")
    ended = await client.post(f"/api/v1/runs/{run_id}/messages", json={"name": "x", "data": 1})
    assert_error(ended, 409, "RunFinished")
    assert_error(await client.post(f"/api/v1/runs/{run_id}/messages", json={"data": 1}), 422)
    assert_error(await client.post(f"/api/v1/runs/{run_id}/messages", json={"name": ""}), 422)


# -- POST /signals ------------------------------------------------------------------------


async def test_signal_delivered_resumes_the_run(client: httpx.AsyncClient) -> None:
    run_id = await start(client, "approval", {"order": "sig-1"})
    await wait_run(client, run_id, "waiting")
    response = await client.post(
        "/api/v1/signals",
        json={"signal": "approval:sig-1", "data": {"approved": True, "by": "alice"}},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "delivered", "run_id": run_id}
    run = await wait_run(client, run_id, "completed")
    assert run["output"] == {"approved_by": "alice"}


async def test_signal_buffered_and_strict(client: httpx.AsyncClient) -> None:
    buffered = await client.post("/api/v1/signals", json={"signal": "nobody", "data": {}})
    assert buffered.status_code == 200
    assert buffered.json() == {"status": "buffered", "run_id": None}
    strict = await client.post(
        "/api/v1/signals", json={"signal": "nobody-strict", "data": {}, "strict": True}
    )
    assert "nobody-strict" in assert_error(strict, 404, "SignalNotFound")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"signal": "k", "data": None}, 400),
        ({"signal": "k", "strict": "yes"}, 422),
        ({"signal": "k", "strict": 1}, 422),
        ({"signal": ""}, 422),
        ({"data": {}}, 422),
        ({"signal": ["k"]}, 422),
    ],
)
async def test_signal_bad_input(client: httpx.AsyncClient, body: Any, status: int) -> None:
    assert_error(await client.post("/api/v1/signals", json=body), status)


# -- POST /events -------------------------------------------------------------------------


async def test_event_starts_the_workflows_it_triggers(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/events", json={"name": "test/quick", "data": {"hello": 1}, "id": "evt-1"}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert len(result["event_ids"]) == 1 and len(result["started"]) == 1
    assert result["resumed"] == []
    run = await wait_run(client, result["started"][0], "completed")
    assert run["output"] == {"hello": 1}
    # the same id again within 24 h is ignored
    again = await client.post("/api/v1/events", json={"name": "test/quick", "id": "evt-1"})
    assert again.status_code == 200 and again.json()["started"] == []


async def test_event_bad_input(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/api/v1/events", json={"data": {}}), 422)
    assert_error(await client.post("/api/v1/events", json={"name": 3}), 422)
    assert_error(await client.post("/api/v1/events", json={"name": "x", "id": ""}), 422)


# -- GET /workflows and the OpenAPI document ---------------------------------------------


async def test_workflows(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/workflows")
    assert response.status_code == 200
    found = {w["id"]: w for w in response.json()}
    assert set(found) == {"approval", "inbox", "quick", "fragile", "parent"}
    assert found["quick"]["triggers"] == [{"event": "test/quick", "if": None}]
    assert found["approval"]["retries"] == 4


async def test_openapi_lists_exactly_the_spec_routes(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    routes = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert routes == {
        ("POST", "/api/v1/runs"),
        ("GET", "/api/v1/runs"),
        ("GET", "/api/v1/runs/{run_id}"),
        ("POST", "/api/v1/runs/{run_id}/cancel"),
        ("POST", "/api/v1/runs/{run_id}/messages"),
        ("POST", "/api/v1/runs/{run_id}/retry"),
        ("POST", "/api/v1/runs/{run_id}/fork"),
        ("POST", "/api/v1/runs/retry"),
        ("POST", "/api/v1/runs/cancel"),
        ("POST", "/api/v1/runs/fork"),
        ("POST", "/api/v1/signals"),
        ("POST", "/api/v1/events"),
        ("GET", "/api/v1/workflows"),
        ("POST", "/api/v1/webhooks/{name}"),
        ("GET", "/api/v1/tokens/{token_id}"),
        ("POST", "/api/v1/tokens/{token_id}"),
    }
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    assert doc["paths"]["/api/v1/runs"]["post"]["responses"]["201"]


async def test_unknown_api_route_and_method(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/nothing"), 404, "NotFound")
    assert_error(await client.delete("/api/v1/runs"), 405, "MethodNotAllowed")


# -- body size limit ----------------------------------------------------------------------


async def test_body_over_the_limit_is_413(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async with make_client(max_body=1024) as small:
        big = {"signal": "k", "data": {"blob": "x" * 2000}}
        assert_error(await small.post("/api/v1/signals", json=big), 413, "PayloadTooLarge")

        async def chunks() -> Any:
            for _ in range(4):
                yield b"x" * 400

        streamed = await small.post(
            "/api/v1/signals", content=chunks(), headers={"content-type": "application/json"}
        )
        assert_error(streamed, 413, "PayloadTooLarge")
        fits = await small.post("/api/v1/signals", json={"signal": "k", "data": {"a": 1}})
        assert fits.status_code == 200


async def test_default_limit_is_4_mib(client: httpx.AsyncClient) -> None:
    blob = "x" * (4 * 1024 * 1024)
    response = await client.post("/api/v1/signals", json={"signal": "k", "data": blob})
    assert_error(response, 413)


async def test_bad_content_length_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/signals", content=b"{}", headers={"content-length": "lots"}
    )
    assert response.status_code == 400


# -- auth ---------------------------------------------------------------------------------


async def test_token_is_required_on_every_route(
    make_client: Callable[..., httpx.AsyncClient], tarry_app: tarry.App
) -> None:
    calls = [
        ("POST", "/api/v1/runs", {"workflow": "quick"}),
        ("GET", "/api/v1/runs", None),
        ("GET", "/api/v1/runs/x", None),
        ("POST", "/api/v1/runs/x/cancel", None),
        ("POST", "/api/v1/runs/x/messages", {"name": "n"}),
        ("POST", "/api/v1/runs/x/retry", None),
        ("POST", "/api/v1/runs/x/fork", {"from_step": "s"}),
        ("POST", "/api/v1/runs/retry", {"all": True}),
        ("POST", "/api/v1/runs/cancel", {"all": True}),
        ("POST", "/api/v1/runs/fork", {"from_step": "s", "all": True}),
        ("POST", "/api/v1/signals", {"signal": "k"}),
        ("POST", "/api/v1/events", {"name": "e"}),
        ("GET", "/api/v1/workflows", None),
    ]
    async with make_client(token=TOKEN) as c:
        for method, path, body in calls:
            for headers in (
                {},
                {"authorization": "Bearer wrong"},
                {"authorization": f"Basic {TOKEN}"},
                {"authorization": f"Bearer {TOKEN}x"},
            ):
                response = await c.request(method, path, json=body, headers=headers)
                assert_error(response, 401, "Unauthorized")
                assert response.headers["www-authenticate"] == "Bearer"
        assert (await tarry_app.list_runs()).items == []
        good = {"authorization": f"Bearer {TOKEN}"}
        assert (await c.get("/api/v1/workflows", headers=good)).status_code == 200
        run_id = await start(c, "quick", {"n": 5}, headers=good)
        run = await wait_run(c, run_id, "completed", headers=good)
        assert run["output"] == {"n": 5}
        assert (await c.get("/api/v1/openapi.json")).status_code == 200


async def test_no_token_means_open(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/runs", headers={"authorization": "Bearer anything"})
    assert response.status_code == 200
