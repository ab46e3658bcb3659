"""The approvals inbox on both stores: every wait on a person (typed signal, message and
token waits, a wait on either of two), soonest deadline first and those without one
last, machine waits left out; answered from the list without opening the run; its
count in the navigation; its list refreshing itself only when it changed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

import tarry

from .conftest import TOKEN, asgi_client, wait_run
from .flows import register
from .person_flows import register_people
from .test_dashboard import csrf_of


@pytest.fixture
async def served(
    make_app: Callable[..., tarry.App],
) -> AsyncIterator[tuple[tarry.App, httpx.AsyncClient]]:
    app = register(register_people(make_app()))
    async with app.worker(), asgi_client(app) as client:
        yield app, client


def listed(html: str) -> list[str]:
    return re.findall(r'<article class="card inbox-item" data-run="([^"]+)"', html)


async def test_the_inbox_lists_waits_on_people_soonest_deadline_first(
    served: tuple[tarry.App, httpx.AsyncClient],
) -> None:
    app, client = served
    empty = await client.get("/inbox")
    assert empty.status_code == 200 and 'id="inbox-empty"' in empty.text
    assert "schema=" in empty.text and listed(empty.text) == []
    assert (await client.get("/inbox", params={"fragment": "count"})).text == ""
    assert 'href="/inbox"' in (await client.get("/")).text  # in the navigation

    order = await app.start("typed-order", {})  # no deadline: last
    token = await app.start("typed-token", {})  # 1 day
    either = await app.start("either-approval", {"id": "e-1"})  # 3 hours
    approval = await app.start("typed-approval", {"id": "a-1"})  # 1 hour
    machine = await app.start("approval", {"order": "m-1"})  # no schema: not a person's
    for run_id in (order, token, either, approval, machine):
        await wait_run(client, run_id, "waiting")

    page = (await client.get("/inbox")).text
    assert listed(page) == [approval, either, token, order]
    assert (await client.get("/inbox", params={"fragment": "count"})).text == "4"
    assert 'id="inbox-total">4 waits on people' in page
    item = page.split(f'data-run="{either}"', 1)[1].split("</article>", 1)[0]
    assert "either-approval" in item and f'href="/runs/{either}"' in item
    assert "signal either:e-1 or token approve-link" in item  # one form answers it
    assert item.count("<form ") == 1 and re.search(r'value="approve"[^>]*>Approve', item)
    assert "until 20" in item and "waiting " in item
    last = page.split(f'data-run="{order}"', 1)[1].split("</article>", 1)[0]
    assert "no deadline" in last and 'name="$.quantity"' in last and "Approve" not in last
    assert 'name="back" value="inbox"' in last


async def test_approve_from_the_inbox_and_the_run_resumes(
    served: tuple[tarry.App, httpx.AsyncClient],
) -> None:
    app, client = served
    approval = await app.start("typed-approval", {"id": "a-2"})
    either = await app.start("either-approval", {"id": "e-2"})
    await wait_run(client, approval, "waiting")
    await wait_run(client, either, "waiting")
    for _ in range(2):  # the list is drawn anew each minute: a boundary between the two
        page = (await client.get("/inbox")).text  # requests is passed once at most
        version = re.search(r"shown=([0-9a-f]+)", page)
        assert version is not None
        unchanged = await client.get(
            "/inbox", params={"fragment": "list", "shown": version.group(1)}
        )
        if unchanged.status_code == 204:
            break
    assert unchanged.status_code == 204

    form = {"csrf": csrf_of(page), "back": "inbox", "step": "approve", "cond": ""}
    sent = await client.post(
        f"/runs/{approval}/decide", data={**form, "decision": "approve", "by": "ivy"}
    )
    assert sent.status_code == 303 and sent.headers["location"] == "/inbox?notice=delivered"
    run = await wait_run(client, approval, "completed")
    assert run["output"]["decision"] == {"approved": True, "by": "ivy", "comment": None}
    after = await client.get("/inbox", params={"notice": "delivered"})
    assert listed(after.text) == [either] and "Signal delivered" in after.text
    moved = await client.get("/inbox", params={"fragment": "list", "shown": version.group(1)})
    assert moved.status_code == 200 and moved.text.lstrip().startswith('<section id="inbox"')

    # the wait on either a signal or a token, answered through the one it offers
    sent = await client.post(
        f"/runs/{either}/decide",
        data={**form, "step": "decide", "cond": "0", "decision": "reject", "by": "jo"},
    )
    assert sent.status_code == 303
    run = await wait_run(client, either, "completed")
    assert run["output"] == {
        "index": 0,
        "decision": {"approved": False, "by": "jo", "comment": None},
    }
    assert listed((await client.get("/inbox")).text) == []


async def test_a_wrong_answer_comes_back_to_the_inbox_beside_its_field(
    served: tuple[tarry.App, httpx.AsyncClient],
) -> None:
    app, client = served
    order = await app.start("typed-order", {})
    await wait_run(client, order, "waiting")
    page = (await client.get("/inbox")).text
    form = {
        "csrf": csrf_of(page),
        "back": "inbox",
        "step": "order",
        "cond": "",
        "decision": "form",
        "$.quantity": "3",
        "$.colour": "",
        "$.note": "by noon",
    }
    refused = await client.post(f"/runs/{order}/decide", data=form)
    assert refused.status_code == 422 and listed(refused.text) == [order]
    field = re.search(r'data-path="\$\.colour">(.*?)</div>', refused.text, re.S)
    assert field is not None and "is required" in field.group(1)
    assert 'value="by noon"' in refused.text and 'value="3"' in refused.text
    assert (await app.get_run(order)).status == "waiting"
    sent = await client.post(f"/runs/{order}/decide", data={**form, "$.colour": '"red"'})
    assert sent.status_code == 303 and sent.headers["location"] == "/inbox?notice=message"
    assert (await wait_run(client, order, "completed"))["output"]["order"]["note"] == "by noon"


async def test_the_inbox_needs_a_session_and_its_count_tells_nothing_without_one(
    make_app: Callable[..., tarry.App],
) -> None:
    app = register_people(make_app())
    async with app.worker(), asgi_client(app, token=TOKEN) as client:
        run_id = await app.start("typed-approval", {"id": "s-1"})
        gate = await client.get("/inbox")
        assert gate.status_code == 303 and gate.headers["location"].startswith("/login")
        count = await client.get("/inbox", params={"fragment": "count"})
        assert count.status_code == 200 and count.text == ""
        login = await client.get("/login")
        await client.post("/login", data={"csrf": csrf_of(login.text), "token": TOKEN})
        await wait_run(client, run_id, "waiting", headers={"authorization": f"Bearer {TOKEN}"})
        assert (await client.get("/inbox", params={"fragment": "count"})).text == "1"
        assert listed((await client.get("/inbox")).text) == [run_id]
