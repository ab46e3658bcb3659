"""The dashboard in-process: pages, the decision and cancel forms, CSRF, login, escaping."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

import tarry

from .conftest import TOKEN, wait_run


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def parked(client: httpx.AsyncClient, order: str) -> str:
    response = await client.post(
        "/api/v1/runs", json={"workflow": "approval", "payload": {"order": order}}
    )
    run_id: str = response.json()["run_id"]
    await wait_run(client, run_id, "waiting")
    return run_id


async def test_runs_page_lists_and_filters(client: httpx.AsyncClient) -> None:
    run_id = await parked(client, "o-1")
    page = await client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert run_id in page.text and "approval:o-1" in page.text
    assert 'hx-trigger="every 2s"' in page.text and "/static/htmx.min.js" in page.text
    assert run_id not in (await client.get("/", params={"status": "completed"})).text
    assert run_id in (await client.get("/", params={"workflow": "approval"})).text
    assert run_id not in (await client.get("/", params={"workflow": "quick"})).text
    fragment = await client.get("/", params={"fragment": "table"})
    assert fragment.text.lstrip().startswith('<section id="runs"') and run_id in fragment.text
    # a nonsense cursor is ignored; a status that does not exist is a clear error
    assert (await client.get("/", params={"cursor": "x"})).status_code == 200
    bogus = await client.get("/", params={"status": "zzz"})
    assert bogus.status_code == 400 and "there is no run status &#39;zzz&#39;" in bogus.text


async def test_static_htmx_is_vendored(client: httpx.AsyncClient) -> None:
    response = await client.get("/static/htmx.min.js")
    assert response.status_code == 200
    assert response.text.startswith("/*! htmx.org 4.0.1")


async def test_run_page_shows_the_wait_and_the_timeline(client: httpx.AsyncClient) -> None:
    run_id = await parked(client, "o-2")
    page = await client.get(f"/runs/{run_id}")
    assert page.status_code == 200
    html = page.text
    assert "approval:o-2" in html and "wait-approval" in html
    assert "until 20" in html  # the deadline, absolute
    assert "prepare" in html and "1 attempt" in html
    # a wait without a schema gets the JSON box: Approve/Reject are the approval shape's
    assert 'name="data"' in html and "Approve" not in html and "Cancel run" in html
    live = await client.get(f"/runs/{run_id}", params={"fragment": "live"})
    assert live.text.lstrip().startswith('<section id="live"')
    missing = await client.get("/runs/nope")
    assert missing.status_code == 404 and "nope" in missing.text


async def test_approve_sends_the_awaited_signal(client: httpx.AsyncClient) -> None:
    run_id = await parked(client, "o-3")
    token = csrf_of((await client.get(f"/runs/{run_id}")).text)
    response = await client.post(
        f"/runs/{run_id}/decide", data={"csrf": token, "decision": "approve", "by": "alice"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/runs/{run_id}?notice=delivered"
    run = await wait_run(client, run_id, "completed")
    assert run["output"] == {"approved_by": "alice"}
    page = await client.get(response.headers["location"])
    assert "Signal delivered" in page.text


async def test_reject_and_custom_json(client: httpx.AsyncClient) -> None:
    rejected = await parked(client, "o-4")
    token = csrf_of((await client.get(f"/runs/{rejected}")).text)
    await client.post(
        f"/runs/{rejected}/decide", data={"csrf": token, "decision": "reject", "by": "bob"}
    )
    run = await wait_run(client, rejected, "cancelled")
    assert run["error"]["message"] == "rejected by bob"

    custom = await parked(client, "o-5")
    bad = await client.post(
        f"/runs/{custom}/decide", data={"csrf": token, "decision": "custom", "data": "{nope"}
    )
    assert bad.status_code == 400 and "not valid JSON" in bad.text
    good = await client.post(
        f"/runs/{custom}/decide",
        data={"csrf": token, "decision": "custom", "data": '{"approved": true, "by": "carol"}'},
    )
    assert good.status_code == 303
    assert (await wait_run(client, custom, "completed"))["output"] == {"approved_by": "carol"}
    # the run no longer waits: a stale form is refused, not buffered for a later run
    stale = await client.post(f"/runs/{custom}/decide", data={"csrf": token, "decision": "approve"})
    assert stale.status_code == 400 and "waits for nothing" in stale.text


async def test_message_wait_gets_a_message(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/runs", json={"workflow": "inbox"})
    run_id = response.json()["run_id"]
    await wait_run(client, run_id, "waiting")
    page = await client.get(f"/runs/{run_id}")
    assert 'name="name" value="decision"' in page.text
    sent = await client.post(
        f"/runs/{run_id}/decide",
        data={
            "csrf": csrf_of(page.text),
            "decision": "approve",
            "by": "dora",
            "name": "decision",
        },
    )
    assert sent.status_code == 303 and sent.headers["location"].endswith("notice=message")
    run = await wait_run(client, run_id, "completed")
    assert run["output"] == {"approved": True, "by": "dora"}


async def test_cancel_button(client: httpx.AsyncClient) -> None:
    run_id = await parked(client, "o-6")
    token = csrf_of((await client.get(f"/runs/{run_id}")).text)
    response = await client.post(f"/runs/{run_id}/cancel", data={"csrf": token})
    assert response.status_code == 303 and response.headers["location"].endswith("=cancelled")
    assert (await wait_run(client, run_id, "cancelled"))["status"] == "cancelled"
    missing = await client.post("/runs/nope/cancel", data={"csrf": token})
    assert missing.status_code == 404


async def test_every_form_needs_the_csrf_token(client: httpx.AsyncClient) -> None:
    run_id = await parked(client, "o-7")
    real = csrf_of((await client.get("/workflows")).text)
    posts = [
        (f"/runs/{run_id}/decide", {"decision": "approve"}),
        (f"/runs/{run_id}/cancel", {}),
        ("/workflows/start", {"workflow": "quick"}),
        ("/events", {"name": "test/quick"}),
        ("/login", {"token": "x"}),
        ("/logout", {}),
    ]
    for path, form in posts:
        for csrf in (None, "", real + "x"):
            data = form if csrf is None else {**form, "csrf": csrf}
            response = await client.post(path, data=data)
            assert response.status_code == 403, (path, csrf)
    # a token from another session (no cookie) is refused as well
    async with httpx.AsyncClient(
        transport=client._transport, base_url="http://testserver"
    ) as stranger:
        response = await stranger.post(f"/runs/{run_id}/cancel", data={"csrf": real})
        assert response.status_code == 403
    assert (await wait_run(client, run_id, "waiting"))["status"] == "waiting"


async def test_workflows_page_starts_a_run(client: httpx.AsyncClient) -> None:
    page = await client.get("/workflows")
    assert page.status_code == 200
    assert "approval" in page.text and "test/quick" in page.text
    token = csrf_of(page.text)
    response = await client.post(
        "/workflows/start",
        data={"csrf": token, "workflow": "quick", "payload": '{"n": 9}', "run_id": "from-ui"},
    )
    assert response.status_code == 303 and response.headers["location"].startswith("/runs/from-ui")
    assert (await wait_run(client, "from-ui", "completed"))["output"] == {"n": 9}
    bad = await client.post(
        "/workflows/start", data={"csrf": token, "workflow": "quick", "payload": "[1,"}
    )
    assert bad.status_code == 400 and "not valid JSON" in bad.text
    unknown = await client.post("/workflows/start", data={"csrf": token, "workflow": "zzz"})
    assert unknown.status_code == 404 and "zzz" in unknown.text


async def test_events_page_sends_an_event(client: httpx.AsyncClient) -> None:
    page = await client.get("/events")
    assert page.status_code == 200
    response = await client.post(
        "/events", data={"csrf": csrf_of(page.text), "name": "test/quick", "data": '{"a": 1}'}
    )
    assert response.status_code == 200 and "Started:" in response.text
    started = re.search(r'href="/runs/([^"]+)"', response.text)
    assert started
    assert (await wait_run(client, started.group(1), "completed"))["output"] == {"a": 1}
    bad = await client.post("/events", data={"csrf": csrf_of(page.text), "name": "x", "data": "{"})
    assert bad.status_code == 400


async def test_events_page_lists_received_events_newest_first(
    client: httpx.AsyncClient, tarry_app: tarry.App
) -> None:
    assert "No events stored yet" in (await client.get("/events")).text
    await tarry_app.send_event("app/first", {"n": 1}, id="evt-first")
    await tarry_app.send_event("app/<b>second</b>", {"n": 2})
    page = (await client.get("/events")).text
    assert page.index("app/&lt;b&gt;second&lt;/b&gt;") < page.index("app/first")
    assert "evt-first" in page and "<b>second</b>" not in page


async def test_everything_is_escaped(client: httpx.AsyncClient) -> None:
    evil_id = "<img src=x onerror=alert(1)>"
    evil = "<script>alert(1)</script>"
    response = await client.post(
        "/api/v1/runs",
        json={"workflow": "approval", "payload": {"order": evil}, "run_id": evil_id},
    )
    run_id = response.json()["run_id"]
    await wait_run(client, run_id, "waiting")
    for url in ("/", f"/runs/{run_id}"):
        html = (await client.get(url)).text
        assert evil not in html and evil_id not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;script&gt;" in (await client.get(f"/runs/{run_id}")).text


async def test_login_with_a_token(
    make_client: Callable[..., httpx.AsyncClient], tarry_app: tarry.App
) -> None:
    async with make_client(token=TOKEN) as c:
        gate = await c.get("/runs/abc?x=1")
        assert gate.status_code == 303
        assert gate.headers["location"] == "/login?next=/runs/abc%3Fx%3D1"
        cookie = gate.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
        for path in ("/", "/workflows", "/events"):
            assert (await c.get(path)).status_code == 303
        login = await c.get("/login", params={"next": "/workflows"})
        assert login.status_code == 200 and 'type="password"' in login.text
        token = csrf_of(login.text)
        wrong = await c.post("/login", data={"csrf": token, "token": "nope", "next": "/"})
        assert wrong.status_code == 401 and "not valid" in wrong.text
        ok = await c.post(
            "/login", data={"csrf": token, "token": TOKEN, "next": "https://evil.example/"}
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/"
        assert (await c.get("/")).status_code == 200
        # the old CSRF token died with the anonymous session
        start = await c.post("/workflows/start", data={"csrf": token, "workflow": "quick"})
        assert start.status_code == 403
        fresh = csrf_of((await c.get("/workflows")).text)
        start = await c.post("/workflows/start", data={"csrf": fresh, "workflow": "quick"})
        assert start.status_code == 303
        # the dashboard session is not an API credential
        assert (await c.get("/api/v1/runs")).status_code == 401
        out = await c.post("/logout", data={"csrf": fresh})
        assert out.status_code == 303
        assert (await c.get("/")).status_code == 303


async def test_a_forged_cookie_is_ignored(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    async with make_client(token=TOKEN) as c:
        c.cookies.set("tarry_session", "eyJjc3JmIjoiYSIsImF1dGgiOnRydWV9.forged.sig")
        assert (await c.get("/")).status_code == 303


async def test_a_live_refresh_of_a_run_that_has_not_moved_fetches_nothing(
    client: httpx.AsyncClient, tarry_app: tarry.App
) -> None:
    run_id = await parked(client, "o-live")
    page = await client.get(f"/runs/{run_id}")
    found = re.search(r"fragment=live&amp;shown=([^\"]+)\"", page.text)
    assert found, "the live part does not say which version it shows"
    shown = found.group(1).replace("%7C", "|")
    assert shown == await tarry_app.run_version(run_id)
    params = {"fragment": "live", "shown": shown}
    still = await client.get(f"/runs/{run_id}", params=params)
    assert still.status_code == 204 and still.content == b""
    # A message to its mailbox moves it: the next refresh renders the run again.
    await tarry_app.send_message(run_id, "note", {"n": 1})
    moved = await client.get(f"/runs/{run_id}", params=params)
    assert moved.status_code == 200 and 'id="live"' in moved.text
    assert await tarry_app.run_version(run_id) != shown
    # The run resumes and ends: its version moves again, and the refresh shows it.
    await tarry_app.send_signal("approval:o-live", {"approved": True, "by": "ann"})
    await wait_run(client, run_id, "completed")
    ended = await client.get(f"/runs/{run_id}", params=params)
    assert ended.status_code == 200 and "completed" in ended.text


async def test_runs_show_their_code_version_and_filter_by_it(
    client: httpx.AsyncClient, tarry_app: tarry.App
) -> None:
    run_id = await parked(client, "o-v")
    version = tarry_app.workflows.version_of("approval")
    assert version is not None and len(version) == 12
    found = (await client.get(f"/api/v1/runs/{run_id}")).json()
    assert (found["version"], found["last_version"]) == (version, version)
    listed = (await client.get("/api/v1/runs", params={"version": version})).json()["items"]
    assert [r["id"] for r in listed] == [run_id]
    assert (await client.get("/api/v1/runs", params={"version": "other"})).json()["items"] == []
    assert (await client.get("/api/v1/runs", params={"version": ""})).status_code == 422
    page = await client.get("/", params={"version": version})
    assert run_id in page.text and f"<code>{version}</code>" in page.text
    assert run_id not in (await client.get("/", params={"version": "other"})).text
    assert version in (await client.get(f"/runs/{run_id}")).text
