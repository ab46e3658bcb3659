"""The dashboard's own reads on both stores (SQLite and PostgreSQL): the runs search
with its counts, a run's page with its waits, origin and waterfall, the events page
with its links, and a session kept across a new server on the same database."""

from __future__ import annotations

import re
from collections.abc import Callable

import tarry

from .conftest import asgi_client, wait_run
from .debug_flows import register_debug
from .flows import register
from .test_dashboard import csrf_of


async def test_the_dashboard_reads_on_either_store(make_app: Callable[..., tarry.App]) -> None:
    app = register_debug(register(make_app()))
    async with app.worker(), asgi_client(app) as client:
        waiting = await app.start("onboarding", {"user": "u-1"}, run_id="store-wait")
        quick = await app.start("quick", {"n": 1}, run_id="store-quick")
        await wait_run(client, waiting, "waiting")
        await wait_run(client, quick, "completed")

        found = await client.get("/", params={"q": "store-", "workflow": "onb", "since": "1h"})
        assert found.status_code == 200 and waiting in found.text and quick not in found.text
        assert "waiting 1" in found.text
        counts = await client.get("/", params={"q": "store-", "fragment": "counts"})
        assert "completed 1" in counts.text and "waiting 1" in counts.text

        page = await client.get(f"/runs/{waiting}")
        assert "where <code>data.user = &#34;u-1&#34;</code>" in page.text
        assert re.search(r'class="wf-bar parked"', page.text)
        token = csrf_of(page.text)

        sent = await app.send_event("app/done", {"user": "u-1"}, id="store-ev")
        assert sent.resumed == [waiting]
        await wait_run(client, waiting, "completed")
        events = (await client.get("/events")).text
        assert f'<td class="links resumed"><a href="/runs/{waiting}">' in events
        assert waiting in (await client.get("/events/store-ev")).text
        cookies = dict(client.cookies)

    # a new server on the same database takes the same session and its form token
    again = register_debug(register(make_app()))
    async with again.worker(), asgi_client(again) as restarted:
        restarted.cookies.update(cookies)
        started = await restarted.post(
            "/workflows/start", data={"csrf": token, "workflow": "quick", "payload": "{}"}
        )
        assert started.status_code == 303, started.text
