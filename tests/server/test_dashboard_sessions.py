"""Stable sessions: the dashboard's signing key is kept in the store (or set by
$TARRY_DASHBOARD_KEY), so a restarted server accepts the cookies and forms of the
tabs left open; a stale form gets a page that keeps it and offers to send it again."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx
import itsdangerous.timed
import pytest

import tarry
from tarry.server.auth import KEY_ENV, SESSION_MAX_AGE

from .conftest import TOKEN, asgi_client, wait_run
from .test_dashboard import csrf_of, parked


def resubmit_fields(html: str) -> dict[str, str]:
    form = html[html.index('id="resubmit"') :]
    form = form[: form.index("</form>")]
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form))


async def test_a_restarted_server_accepts_the_open_tabs_form(tarry_app: tarry.App) -> None:
    async with asgi_client(tarry_app) as before:
        run_id = await parked(before, "r-1")
        token = csrf_of((await before.get(f"/runs/{run_id}")).text)
        cookies = dict(before.cookies)
    async with asgi_client(tarry_app) as after:  # a new server process: a new Guard
        after.cookies.update(cookies)
        response = await after.post(
            f"/runs/{run_id}/decide", data={"csrf": token, "decision": "approve", "by": "ann"}
        )
        assert response.status_code == 303 and response.headers["location"].endswith(
            "notice=delivered"
        )
        run = await wait_run(after, run_id, "completed")
        assert run["output"] == {"approved_by": "ann"}


async def test_the_key_from_the_environment_wins(
    tarry_app: tarry.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "configured-key")
    async with asgi_client(tarry_app) as first:
        run_id = await parked(first, "r-2")
        token = csrf_of((await first.get(f"/runs/{run_id}")).text)
        cookies = dict(first.cookies)
    monkeypatch.setenv(KEY_ENV, "another-key")  # another key: old sessions are not known
    async with asgi_client(tarry_app) as second:
        second.cookies.update(cookies)
        stale = await second.post(
            f"/runs/{run_id}/decide", data={"csrf": token, "decision": "approve"}
        )
        assert stale.status_code == 403 and "Send this again?" in stale.text
    monkeypatch.setenv(KEY_ENV, "configured-key")
    async with asgi_client(tarry_app) as third:
        third.cookies.update(cookies)
        ok = await third.post(f"/runs/{run_id}/decide", data={"csrf": token, "decision": "reject"})
        assert ok.status_code == 303


async def test_a_stale_form_keeps_the_decision_and_can_be_sent_again(
    client: httpx.AsyncClient,
) -> None:
    run_id = await parked(client, "r-3")
    client.cookies.clear()  # the session expired, or the cookie went
    stale = await client.post(
        f"/runs/{run_id}/decide",
        data={"csrf": "from-an-old-page", "decision": "approve", "by": "dora"},
    )
    assert stale.status_code == 403
    assert "Nothing was done" in stale.text and "<dt>by</dt><dd><code>dora</code>" in stale.text
    assert f'action="/runs/{run_id}/decide"' in stale.text
    assert f'href="/runs/{run_id}">Back to the page' in stale.text
    fields = resubmit_fields(stale.text)
    assert fields["decision"] == "approve" and fields["by"] == "dora"
    assert fields["csrf"] != "from-an-old-page"
    assert (await wait_run(client, run_id, "waiting"))["status"] == "waiting"  # not sent yet

    again = await client.post(f"/runs/{run_id}/decide", data=fields)
    assert again.status_code == 303
    run = await wait_run(client, run_id, "completed")
    assert run["output"] == {"approved_by": "dora"}


async def test_an_expired_session_keeps_the_decision_too(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = await parked(client, "r-5")
    token = csrf_of((await client.get(f"/runs/{run_id}")).text)
    # the signer's clock alone moves past the session's age (the App's clock does not)
    later = int(time.time()) + SESSION_MAX_AGE + 60
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", lambda _: later)
    expired = await client.post(
        f"/runs/{run_id}/decide", data={"csrf": token, "decision": "approve", "by": "fay"}
    )
    assert expired.status_code == 403 and "Send this again?" in expired.text
    fields = resubmit_fields(expired.text)
    assert (fields["decision"], fields["by"]) == ("approve", "fay")
    again = await client.post(f"/runs/{run_id}/decide", data=fields)
    assert again.status_code == 303
    assert (await wait_run(client, run_id, "completed"))["output"] == {"approved_by": "fay"}


async def test_a_stale_form_on_a_server_with_a_token_asks_for_it_and_keeps_no_secret(
    make_client: Callable[..., httpx.AsyncClient], tarry_app: tarry.App
) -> None:
    async with make_client(token=TOKEN) as c:
        headers = {"authorization": f"Bearer {TOKEN}"}
        response = await c.post(
            "/api/v1/runs",
            json={"workflow": "approval", "payload": {"order": "r-4"}},
            headers=headers,
        )
        run_id = response.json()["run_id"]
        await wait_run(c, run_id, "waiting", headers=headers)
        stale = await c.post(
            f"/runs/{run_id}/decide",
            data={"csrf": "old", "decision": "reject", "by": "eve", "token": "leaked?"},
        )
        assert stale.status_code == 403 and 'type="password" name="token"' in stale.text
        fields = resubmit_fields(stale.text)
        assert "token" not in fields and "leaked?" not in stale.text
        wrong = await c.post(f"/runs/{run_id}/decide", data={**fields, "token": "nope"})
        assert wrong.status_code == 403 and "That token is not valid" in wrong.text
        assert resubmit_fields(wrong.text) == fields  # still kept, same session
        ok = await c.post(f"/runs/{run_id}/decide", data={**fields, "token": TOKEN})
        assert ok.status_code == 303 and ok.headers["location"].endswith("notice=delivered")
        run = await wait_run(c, run_id, "cancelled", headers=headers)
        assert run["error"]["message"] == "rejected by eve"


async def test_a_stale_login_form_asks_to_log_in_again(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    async with make_client(token=TOKEN) as c:
        response = await c.post("/login", data={"csrf": "old", "token": TOKEN, "next": "/"})
        assert response.status_code == 403 and "log in again" in response.text
        assert 'name="csrf" value="' in response.text
