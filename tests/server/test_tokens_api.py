"""``/api/v1/tokens/{id}?sig=...`` on both stores, on virtual time.

Each test serves an ``Environment``'s App in-process behind a bearer token that the
token routes must not need: a POST with JSON completes a token, a GET renders its
confirmation page (and changes nothing), whose form posts back with a CSRF token.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import tarry
from tarry.testing import Environment

from .conftest import asgi_client
from .test_dashboard import csrf_of

TOKEN = "token-test-bearer"
SHAPE = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def build_app(database_url: str) -> tarry.App:
    app = tarry.App(database_url, public_url="https://flows.example.com")

    @app.workflow("contract")
    async def contract(ctx: tarry.Context, step: tarry.Step) -> Any:
        token = await step.create_token("contract-signed", timeout="14d")
        return await step.wait_for_token(token)

    @app.workflow("typed")
    async def typed(ctx: tarry.Context, step: tarry.Step) -> Any:
        token = await step.create_token("count", timeout="1d", schema=SHAPE)
        return await step.wait_for_token(token)

    @app.workflow("approval")
    async def approval(ctx: tarry.Context, step: tarry.Step) -> Any:
        token = await step.create_token("approve-order", timeout="7d", schema=tarry.Approval)
        decision = await step.wait_for_token(token)
        return None if decision is None else decision.model_dump()

    return app


@pytest.fixture
async def env(database_url: str) -> AsyncIterator[Environment]:
    async with Environment(build_app(database_url), database=database_url) as environment:
        yield environment


@pytest.fixture
async def client(env: Environment) -> AsyncIterator[httpx.AsyncClient]:
    """The server with a bearer token: token links must not need it."""
    async with asgi_client(env.app, token=TOKEN) as http:
        yield http


class Link:
    """A token's link as the run's code got it (``Token.url``)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == "https://flows.example.com"
        self.path = parts.path
        self.id = parts.path.rsplit("/", 1)[1]
        self.sig = parse_qs(parts.query)["sig"][0]
        self.local = f"{parts.path}?{parts.query}"  # the same link, on the test server

    def with_sig(self, sig: str) -> str:
        return f"{self.path}?sig={sig}"


async def started(env: Environment, workflow: str) -> tuple[str, Link]:
    """A run of ``workflow`` parked on its token, and the token's link."""
    from tarry.tokens import token_url

    run_id = await env.start(workflow)
    waiting = await env.waiting(run_id)
    assert waiting is not None and waiting.kind == "token"
    made = next(s for s in (await env.get_run(run_id)).steps if s.kind == "create_token")
    url = token_url("https://flows.example.com", made.output["id"], made.output["sig"])
    return run_id, Link(url)


def tampered(sig: str) -> str:
    return sig[:-2] + ("AA" if not sig.endswith("AA") else "BB")


async def test_post_json_completes_without_the_bearer_token(env, client) -> None:
    run_id, link = await started(env, "contract")
    response = await client.post(link.local, json={"signed": True, "by": "dana"})
    assert response.status_code == 200, response.text
    assert response.json() == {"token_id": link.id, "run_id": run_id, "status": "completed"}
    assert await env.result(run_id) == {"signed": True, "by": "dana"}


async def test_a_tampered_or_missing_signature_is_401_and_delivers_nothing(env, client) -> None:
    run_id, link = await started(env, "contract")
    for url in (link.with_sig(tampered(link.sig)), link.path, link.with_sig("")):
        response = await client.post(url, json={"signed": True})
        assert response.status_code == 401, (url, response.text)
        assert response.json()["error"]["type"] == "TokenSignatureInvalid"
    _, other = await started(env, "contract")  # a real signature, of another token
    response = await client.post(link.with_sig(other.sig), json={"signed": True})
    assert response.status_code == 401
    assert (await env.app.get_token(link.id)).state == "pending"
    waiting = await env.waiting(run_id)
    assert waiting is not None and waiting.kind == "token"


async def test_one_shot_409_and_the_first_completion_stands(env, client) -> None:
    run_id, link = await started(env, "contract")
    assert (await client.post(link.local, json="first")).status_code == 200
    second = await client.post(link.local, json="second")
    assert second.status_code == 409
    assert second.json()["error"]["type"] == "TokenAlreadyUsed"
    assert await env.result(run_id) == "first"


async def test_expired_410(env, client) -> None:
    run_id, link = await started(env, "contract")
    await env.advance("14d")  # the wait times out with the token
    response = await client.post(link.local, json={"late": True})
    assert response.status_code == 410
    assert response.json()["error"]["type"] in ("TokenExpired", "TokenRunEnded")
    assert await env.result(run_id) is None


async def test_cancelled_run_410(env, client) -> None:
    run_id, link = await started(env, "contract")
    await env.cancel(run_id, "no longer needed")
    response = await client.post(link.local, json={"signed": True})
    assert response.status_code == 410
    assert response.json()["error"]["type"] == "TokenRunEnded"


async def test_unknown_token_404_and_bad_bodies(env, client) -> None:
    _, link = await started(env, "contract")
    assert (await client.post("/api/v1/tokens/f00?sig=x", json={})).status_code == 404
    bad_json = await client.post(
        link.local, content=b"{nope", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400 and bad_json.json()["error"]["type"] == "InvalidJSON"
    null = await client.post(
        link.local, content=b"null", headers={"content-type": "application/json"}
    )
    assert null.status_code == 400 and "None" in null.json()["error"]["message"]
    text = await client.post(link.local, content=b"hi", headers={"content-type": "text/plain"})
    assert text.status_code == 415
    huge = await client.post(link.local, json={"blob": "x" * (5 * 1024 * 1024)})
    assert huge.status_code == 413
    unknown = await client.post(link.local + "&extra=1", json={})
    assert unknown.status_code == 422
    assert (await env.app.get_token(link.id)).state == "pending"


async def test_data_that_does_not_fit_the_schema_is_422_and_stored_nowhere(env, client) -> None:
    run_id, link = await started(env, "typed")
    response = await client.post(link.local, json={"n": "three"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "PayloadInvalid" and error["errors"][0]["path"] == "$.n"
    assert (await env.app.get_token(link.id)).state == "pending"
    assert (await client.post(link.local, json={"n": 3})).status_code == 200
    assert await env.result(run_id) == {"n": 3}


async def test_get_renders_the_page_and_changes_nothing(env, client) -> None:
    run_id, link = await started(env, "contract")
    before = await env.app.run_version(run_id)
    for _ in range(2):
        page = await client.get(link.local)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "contract-signed" in page.text and run_id in page.text
        assert 'name="data"' in page.text and "Approve" not in page.text
    assert await env.app.run_version(run_id) == before
    assert (await env.app.get_token(link.id)).state == "pending"
    bad = await client.get(link.with_sig(tampered(link.sig)))
    assert bad.status_code == 401 and "not valid" in bad.text and 'name="data"' not in bad.text
    missing = await client.get("/api/v1/tokens/f00?sig=x")
    assert missing.status_code == 404 and "no such request" in missing.text


async def test_the_page_form_completes_with_its_csrf_token(env, client) -> None:
    run_id, link = await started(env, "contract")
    page = await client.get(link.local)
    form = {"csrf": csrf_of(page.text), "decision": "custom", "data": '{"signed": "page"}'}
    done = await client.post(link.local, data=form)
    assert done.status_code == 200, done.text
    assert "your answer was recorded" in done.text and 'id="token-data"' in done.text
    assert await env.result(run_id) == {"signed": "page"}
    again = await client.get(link.local)
    assert "a request is answered once" in again.text and 'name="data"' not in again.text


async def test_a_form_without_its_csrf_token_stores_nothing_and_keeps_the_text(env, client) -> None:
    run_id, link = await started(env, "contract")
    await client.get(link.local)  # the session cookie, but not its form's token
    refused = await client.post(
        link.local, data={"csrf": "forged", "decision": "custom", "data": '{"typed": 1}'}
    )
    assert refused.status_code == 403
    assert "Nothing was recorded" in refused.text
    assert "{&#34;typed&#34;: 1}" in refused.text  # what was typed, kept in the box
    fresh = httpx.AsyncClient(transport=client._transport, base_url="http://testserver")
    async with fresh:  # no session at all: a page elsewhere posting the form
        cross = await fresh.post(link.local, data={"decision": "custom", "data": "{}"})
    assert cross.status_code == 403
    assert (await env.app.get_token(link.id)).state == "pending"
    waiting = await env.waiting(run_id)
    assert waiting is not None


async def test_a_bad_answer_on_the_page_keeps_what_was_typed(env, client) -> None:
    run_id, link = await started(env, "typed")
    page = await client.get(link.local)
    assert "What the answer must look like" in page.text
    form = {"csrf": csrf_of(page.text), "decision": "custom", "data": '{"n": "three"}'}
    refused = await client.post(link.local, data=form)
    assert refused.status_code == 422
    assert "$.n" in refused.text and "{&#34;n&#34;: &#34;three&#34;}" in refused.text
    form["data"] = "{not json"
    assert (await client.post(link.local, data=form)).status_code == 400
    form["data"] = '{"n": 7}'
    assert (await client.post(link.local, data=form)).status_code == 200
    assert await env.result(run_id) == {"n": 7}


async def test_the_approval_shape_gets_approve_and_reject(env, client) -> None:
    run_id, link = await started(env, "approval")
    page = await client.get(link.local)
    assert re.search(r'value="approve"[^>]*>Approve', page.text)
    assert re.search(r'value="reject"[^>]*>Reject', page.text)
    form = {"csrf": csrf_of(page.text), "decision": "reject", "by": "erin", "comment": "too dear"}
    assert (await client.post(link.local, data=form)).status_code == 200
    assert await env.result(run_id) == {"approved": False, "by": "erin", "comment": "too dear"}


async def test_the_routes_are_in_the_openapi_document(client) -> None:
    document = (await client.get("/api/v1/openapi.json")).json()
    routes = document["paths"]["/api/v1/tokens/{token_id}"]
    assert set(routes) == {"get", "post"}
    for operation in routes.values():
        assert any(p["name"] == "sig" and p["in"] == "query" for p in operation["parameters"])
    assert {"401", "404", "409", "410", "413", "422"} <= set(routes["post"]["responses"])
    assert "text/html" in routes["get"]["responses"]["200"]["content"]


async def test_the_run_page_shows_the_token_wait(env, client) -> None:
    run_id, _ = await started(env, "contract")
    form = await client.get("/login")
    await client.post("/login", data={"csrf": csrf_of(form.text), "token": TOKEN})
    page = await client.get(f"/runs/{run_id}")
    assert page.status_code == 200
    assert re.search(r"token\s*<code>contract-signed</code> at step", page.text)
    assert "Approve" not in page.text  # the run page sends signals and messages, not tokens
