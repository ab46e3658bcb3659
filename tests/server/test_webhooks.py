"""``POST /api/v1/webhooks/{name}`` on both stores, on virtual time.

Each test serves an ``Environment``'s App in-process: deliveries go through the
HTTP route, the runs they start and resume execute in the environment's worker,
and a signature's age is tested by moving the virtual clock, not by sleeping.
Deliveries are signed at the environment's time with the verifiers' ``sign``;
tests/unit/test_verify.py checks the signatures against the providers' vectors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

import tarry
from tarry.testing import Environment

from .conftest import asgi_client

TOKEN = "webhook-test-token"
STRIPE = tarry.verify.stripe("whsec_test_secret")
GITHUB = tarry.verify.github("It's a Secret to Everybody")
SLACK = tarry.verify.slack("8f742231b10e8888abcd99yyyzzz85a5")
SHOP = tarry.verify.hmac_sha256(
    header="X-Shop-Signature", secret="shop-secret", prefix="", encoding="base64",
    id_header="X-Shop-Delivery",
)  # fmt: skip

# The command from Slack's "Verifying requests from Slack", as Slack posts it.
SLASH_COMMAND = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
FORM = "application/x-www-form-urlencoded"


def build_app(database_url: str) -> tarry.App:
    app = tarry.App(database_url)

    @app.workflow("paid", on="stripe/invoice.paid")
    async def paid(ctx: tarry.Context, step: tarry.Step) -> Any:
        assert ctx.event is not None
        return {"amount": ctx.payload["data"]["object"]["amount_paid"], "event": ctx.event.id}

    @app.workflow("review", on="github/pull_request")
    async def review(ctx: tarry.Context, step: tarry.Step) -> Any:
        return ctx.payload["pull_request"]["number"]

    @app.workflow("deploy")
    async def deploy(ctx: tarry.Context, step: tarry.Step) -> Any:
        pushed = await step.wait_for_event(
            "pushed", event="github/push", match="data.repository.full_name", timeout="1d"
        )
        return None if pushed is None else pushed.data["after"]

    @app.workflow("slash", on="slack/command/webhook-collect")
    async def slash(ctx: tarry.Context, step: tarry.Step) -> Any:
        return ctx.payload["user_name"]

    @app.workflow("mention", on="slack/app_mention")
    async def mention(ctx: tarry.Context, step: tarry.Step) -> Any:
        return ctx.payload["event"]["text"]

    @app.workflow("ship")
    async def ship(ctx: tarry.Context, step: tarry.Step) -> Any:
        paid = await step.wait_for_event(
            "paid", event="shop/paid", match="data.order", timeout="7d"
        )
        return None if paid is None else paid.data["total"]

    app.webhook("stripe", verify=STRIPE, event="stripe/{{type}}")
    app.webhook("github", verify=GITHUB, event="github/{{headers.X-GitHub-Event}}")
    app.webhook("slack-commands", verify=SLACK, event="slack/command{{command}}")
    app.webhook("slack-events", verify=SLACK, event="slack/{{event.type}}")
    app.webhook("shop", verify=SHOP, event="shop/{{status}}", max_body=1024)
    return app


@pytest.fixture
async def env(database_url: str) -> AsyncIterator[Environment]:
    async with Environment(build_app(database_url), database=database_url) as environment:
        yield environment


@pytest.fixture
async def client(env: Environment) -> AsyncIterator[httpx.AsyncClient]:
    """The server with a bearer token: webhooks must not need it."""
    async with asgi_client(env.app, token=TOKEN) as http:
        yield http


async def deliver(
    client: httpx.AsyncClient,
    env: Environment,
    name: str,
    body: bytes,
    verifier: tarry.verify.Verifier,
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST ``body`` signed by ``verifier`` at the environment's time."""
    signed = verifier.sign(body, now=env.clock.now())
    sent = {"content-type": content_type, **signed, **(headers or {})}
    return await client.post(f"/api/v1/webhooks/{name}", content=body, headers=sent)


async def stored(env: Environment) -> tuple[list[tarry.Event], list[tarry.Run]]:
    events = (await env.list_events(limit=100)).items
    runs = (await env.list_runs(limit=100)).items
    return events, runs


def stripe_event(event_id: str = "evt_1", kind: str = "invoice.paid") -> bytes:
    return orjson.dumps(
        {"id": event_id, "object": "event", "type": kind,
         "data": {"object": {"object": "invoice", "amount_paid": 4200}}}
    )  # fmt: skip


# -- deliveries that become events ----------------------------------------------------------


async def test_a_stripe_delivery_starts_a_workflow_and_its_retry_stores_nothing_new(
    env: Environment, client: httpx.AsyncClient
) -> None:
    first = await deliver(client, env, "stripe", stripe_event(), STRIPE)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["event_id"] == "stripe:evt_1" and answer["event"] == "stripe/invoice.paid"
    assert answer["duplicate"] is False and answer["resumed"] == []
    [run_id] = answer["started"]
    assert await env.result(run_id) == {"amount": 4200, "event": "stripe:evt_1"}

    # Stripe signs a retry again, later, with the same event id
    await env.advance("2m")
    retry = await deliver(client, env, "stripe", stripe_event(), STRIPE)
    assert retry.status_code == 200, retry.text
    assert retry.json() == {
        "event_id": "stripe:evt_1", "event": "stripe/invoice.paid", "duplicate": True,
        "started": [], "resumed": [],
    }  # fmt: skip
    events, runs = await stored(env)
    assert [e.id for e in events] == ["stripe:evt_1"] and [r.id for r in runs] == [run_id]

    other = await deliver(client, env, "stripe", stripe_event("evt_2"), STRIPE)
    assert other.json()["duplicate"] is False and len(other.json()["started"]) == 1


async def test_a_github_delivery_resumes_a_waiting_run_and_starts_another(
    env: Environment, client: httpx.AsyncClient
) -> None:
    waiting = await env.start("deploy", {"repository": {"full_name": "octo/hello"}})
    await env.run_until_idle()
    repository = {"full_name": "octo/hello"}
    push = orjson.dumps({"ref": "refs/heads/main", "after": "6dcb09b", "repository": repository})
    delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery}
    answer = await deliver(client, env, "github", push, GITHUB, headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["event"] == "github/push" and body["resumed"] == [waiting]
    assert body["event_id"] == "github:72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert await env.result(waiting) == "6dcb09b"

    opened = orjson.dumps({"action": "opened", "pull_request": {"number": 7}})
    headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "d-2"}
    started = await deliver(client, env, "github", opened, GITHUB, headers=headers)
    [run_id] = started.json()["started"]
    assert await env.result(run_id) == 7
    redelivered = await deliver(client, env, "github", opened, GITHUB, headers=headers)
    assert redelivered.json()["duplicate"] is True
    assert len((await stored(env))[1]) == 2


async def test_slack_answers_url_verification_and_receives_commands_and_events(
    env: Environment, client: httpx.AsyncClient
) -> None:
    challenge = orjson.dumps(
        {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY",
         "type": "url_verification"}
    )  # fmt: skip
    answered = await deliver(client, env, "slack-events", challenge, SLACK)
    assert answered.status_code == 200
    assert answered.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY"}
    assert await stored(env) == ([], [])

    command = await deliver(client, env, "slack-commands", SLASH_COMMAND, SLACK, content_type=FORM)
    assert command.status_code == 200, command.text
    assert command.json()["event"] == "slack/command/webhook-collect"
    [run_id] = command.json()["started"]
    assert await env.result(run_id) == "roadrunner"
    again = await deliver(
        client, env, "slack-commands", SLASH_COMMAND, SLACK, content_type=FORM,
        headers={"X-Slack-Retry-Num": "1"},
    )  # fmt: skip
    assert again.json()["duplicate"] is True  # no event_id: the body's digest

    mention = orjson.dumps(
        {"type": "event_callback", "event_id": "Ev0PV52K21",
         "event": {"type": "app_mention", "text": "<@U0LAN0Z89> hi"}}
    )  # fmt: skip
    first = await deliver(client, env, "slack-events", mention, SLACK)
    assert first.json()["event_id"] == "slack-events:Ev0PV52K21"
    assert await env.result(first.json()["started"][0]) == "<@U0LAN0Z89> hi"
    await env.advance("1m")
    retry_headers = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    retried = await deliver(client, env, "slack-events", mention, SLACK, headers=retry_headers)
    assert retried.status_code == 200 and retried.json()["duplicate"] is True
    events, runs = await stored(env)
    assert len(events) == 2 and len(runs) == 2


async def test_a_generic_hmac_delivery_resumes_the_run_it_matches(
    env: Environment, client: httpx.AsyncClient
) -> None:
    mine = await env.start("ship", {"order": "o-1"})
    other = await env.start("ship", {"order": "o-2"})
    await env.run_until_idle()
    paid = orjson.dumps({"status": "paid", "order": "o-1", "total": 99})
    answer = await deliver(client, env, "shop", paid, SHOP, headers={"X-Shop-Delivery": "del-1"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["resumed"] == [mine] and answer.json()["event_id"] == "shop:del-1"
    assert await env.result(mine) == 99
    assert (await env.get_run(other)).status == "waiting"


# -- deliveries refused, with nothing stored ------------------------------------------------


async def test_bad_signatures_are_401_and_store_nothing(
    env: Environment, client: httpx.AsyncClient
) -> None:
    body = stripe_event()
    signed = STRIPE.sign(body, now=env.clock.now())
    wrong = tarry.verify.stripe("whsec_other").sign(body, now=env.clock.now())
    cases = [
        (body + b" ", signed, "signature mismatch"),  # tampered body
        (body, wrong, "signature mismatch"),  # wrong secret
        (body, {}, "missing header Stripe-Signature"),
        (body, {"Stripe-Signature": "t=1"}, "malformed header Stripe-Signature"),
    ]
    for content, headers, reason in cases:
        sent = {"content-type": "application/json", **headers}
        response = await client.post("/api/v1/webhooks/stripe", content=content, headers=sent)
        assert response.status_code == 401, response.text
        error = response.json()["error"]
        assert error["type"] == "SignatureRejected" and error["message"].startswith(reason)
        assert "whsec" not in response.text
    github = await client.post(
        "/api/v1/webhooks/github", content=b"{}", headers={"X-Hub-Signature-256": "sha256=00"}
    )
    assert github.status_code == 401 and github.json()["error"]["message"] == "signature mismatch"
    assert await stored(env) == ([], [])


async def test_a_stripe_signature_outside_the_tolerance_is_401(
    env: Environment, client: httpx.AsyncClient
) -> None:
    def signed(body: bytes, at: float) -> dict[str, str]:
        return {"content-type": "application/json", **STRIPE.sign(body, now=at)}

    url = "/api/v1/webhooks/stripe"
    edge, late, early = stripe_event("evt_edge"), stripe_event("evt_late"), stripe_event("evt_3")
    signed_at = env.clock.now()
    await env.advance("5m")
    at_the_edge = await client.post(url, content=edge, headers=signed(edge, signed_at))
    assert at_the_edge.status_code == 200, at_the_edge.text
    await env.advance("1s")
    for body, headers in (
        (late, signed(late, signed_at)),  # 5 min 1 s old
        (early, signed(early, env.clock.now() + 301)),  # dated in the future
    ):
        refused = await client.post(url, content=body, headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["message"] == "timestamp outside the window"
    events, _ = await stored(env)
    assert [e.id for e in events] == ["stripe:evt_edge"]


async def test_a_body_over_the_limit_is_413_without_reading_it_all(
    env: Environment, client: httpx.AsyncClient
) -> None:
    big = orjson.dumps({"status": "paid", "pad": "x" * 2000})
    declared = await deliver(client, env, "shop", big, SHOP)
    assert declared.status_code == 413
    assert declared.json()["error"]["type"] == "PayloadTooLarge"

    pulled = 0

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        nonlocal pulled
        for _ in range(1000):
            pulled += 1
            yield b"x" * 512

    streamed = await client.post("/api/v1/webhooks/shop", content=chunks())
    assert streamed.status_code == 413
    assert pulled <= 3  # 1024 bytes allowed: the third chunk goes over and stops the read
    assert await stored(env) == ([], [])


async def test_unknown_names_unreadable_bodies_and_unfillable_templates(
    env: Environment, client: httpx.AsyncClient
) -> None:
    unknown = await client.post("/api/v1/webhooks/paypal", content=b"{}")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == (
        "no webhook named 'paypal' is registered on this server"
    )  # and no list of the names that are
    no_type = await deliver(client, env, "stripe", orjson.dumps({"id": "evt_9"}), STRIPE)
    assert no_type.status_code == 422
    assert "needs the body's 'type'" in no_type.json()["error"]["message"]
    not_json = await deliver(client, env, "stripe", b"{nope", STRIPE)
    assert not_json.status_code == 400 and not_json.json()["error"]["type"] == "UnreadableBody"
    image = await deliver(client, env, "stripe", b"\x89PNG", STRIPE, content_type="image/png")
    assert image.status_code == 415
    assert (await client.get("/api/v1/webhooks/stripe")).status_code == 405
    assert await stored(env) == ([], [])


async def test_no_bearer_token_for_webhooks_while_the_api_still_needs_it(
    env: Environment, client: httpx.AsyncClient
) -> None:
    delivered = await deliver(client, env, "stripe", stripe_event(), STRIPE)
    assert delivered.status_code == 200, delivered.text
    assert (await client.get("/api/v1/runs")).status_code == 401
    events = await client.post("/api/v1/events", json={"name": "stripe/invoice.paid"})
    assert events.status_code == 401
    authorized = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/api/v1/runs", headers=authorized)).status_code == 200


async def test_the_route_is_in_the_openapi_document_without_security(
    client: httpx.AsyncClient,
) -> None:
    spec = await client.get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    operation = spec.json()["paths"]["/api/v1/webhooks/{name}"]["post"]
    assert "security" not in operation
    assert {"200", "401", "404", "413", "415", "422"} <= set(operation["responses"])
