"""The dashboard for debugging, in-process: the waterfall, waits in full, controls that
follow the run, forms that keep their input, the runs search, events and their runs,
and error pages that never name the database."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import tarry

from .conftest import asgi_client, wait_run
from .debug_flows import register_debug
from .flows import FAST, register
from .test_dashboard import csrf_of, parked


@pytest.fixture
async def tarry_app(sqlite_url: str) -> AsyncIterator[tarry.App]:
    app = register_debug(register(tarry.App(sqlite_url, **FAST)))
    async with app.worker():
        yield app
    await app.close()


@pytest.fixture
async def client(tarry_app: tarry.App) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(tarry_app) as c:
        yield c


async def start(client: httpx.AsyncClient, workflow: str, payload: object, **extra: str) -> str:
    response = await client.post(
        "/api/v1/runs", json={"workflow": workflow, "payload": payload, **extra}
    )
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run_id"]
    return run_id


def bars(html: str, kind: str) -> list[str]:
    return re.findall(rf'class="wf-bar {kind}" style="[^"]+" title="([^"]*)"', html)


# -- the run page -------------------------------------------------------------------------


async def test_the_waterfall_shows_failed_attempts_backoff_and_the_attempt_that_stood(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run_id = await start(client, "fragile", {"gate": str(gate)})
    await wait_run(client, run_id, "failed")
    page = (await client.get(f"/runs/{run_id}")).text
    assert 'id="waterfall"' in page
    failed = bars(page, "failed")
    assert len(failed) == 2 and all("ConnectionError the gate" in t for t in failed)
    assert failed[0].startswith("attempt 1 failed after") and "attempt 2" in failed[1]
    assert len(bars(page, "backoff")) == 1  # between the two attempts
    assert len(bars(page, "attempt")) == 1  # "prepare", which completed
    assert '<span class="wf-failed">2 failed</span>' in page
    assert "Traceback (most recent call last)" in page  # each attempt's traceback

    gate.touch()
    token = csrf_of(page)
    await client.post(f"/runs/{run_id}/retry", data={"csrf": token, "by": "ann"})
    await wait_run(client, run_id, "completed")
    page = (await client.get(f"/runs/{run_id}")).text
    assert len(bars(page, "failed")) == 2 and len(bars(page, "attempt")) == 3
    assert "· 2 retries" in page or "· 1 retry" in page
    rows = re.findall(r'<div class="wf-row ([a-z_]+)[^"]*" data-step="([^"]+)"', page)
    assert rows == [("completed", "prepare"), ("completed", "charge"), ("completed", "ship")]


async def test_a_parked_wait_is_a_parked_bar_that_grows_until_it_ends(
    client: httpx.AsyncClient, tarry_app: tarry.App
) -> None:
    run_id = await parked(client, "wf-1")
    page = (await client.get(f"/runs/{run_id}")).text
    [bar] = bars(page, "parked")
    assert bar.startswith("parked ") and bar.endswith("(waiting)")
    assert "so far" in page  # the wait's duration runs on
    await tarry_app.send_signal("approval:wf-1", {"approved": True, "by": "x"})
    await wait_run(client, run_id, "completed")
    [bar] = bars((await client.get(f"/runs/{run_id}")).text, "parked")
    assert bar.endswith("(completed)")


async def test_controls_follow_the_runs_state(
    client: httpx.AsyncClient, tarry_app: tarry.App
) -> None:
    run_id = await parked(client, "c-1")
    live = await client.get(f"/runs/{run_id}", params={"fragment": "live"})
    for control in ('id="decide"', 'id="cancel"', "Yes, cancel this run"):
        assert control in live.text
    assert 'id="retry"' not in live.text
    await tarry_app.send_signal("approval:c-1", {"approved": True, "by": "x"})
    await wait_run(client, run_id, "completed")
    ended = await client.get(f"/runs/{run_id}", params={"fragment": "live"})
    for control in ('id="decide"', 'id="cancel"', 'id="retry"', "Approve"):
        assert control not in ended.text
    assert "hx-trigger" not in ended.text  # an ended run stops refreshing


async def test_cancel_asks_first_and_takes_a_reason(
    client: httpx.AsyncClient,
) -> None:
    run_id = await parked(client, "c-2")
    page = (await client.get(f"/runs/{run_id}")).text
    confirm = page[page.index('<details class="cancel"') :]
    confirm = confirm[: confirm.index("</details>")]
    assert "<summary" in confirm and "Cancel run…" in confirm and 'name="reason"' in confirm
    response = await client.post(
        f"/runs/{run_id}/cancel", data={"csrf": csrf_of(page), "reason": "out of stock"}
    )
    assert response.status_code == 303
    run = await wait_run(client, run_id, "cancelled")
    assert run["error"]["message"] == "out of stock"


async def test_a_form_with_an_error_keeps_what_was_typed(client: httpx.AsyncClient) -> None:
    run_id = await parked(client, "k-1")
    token = csrf_of((await client.get(f"/runs/{run_id}")).text)
    typed = '{"approved": true, "by": "carol", oops}'
    bad = await client.post(
        f"/runs/{run_id}/decide",
        data={"csrf": token, "decision": "custom", "data": typed, "by": "carol"},
    )
    assert bad.status_code == 400 and "data is not valid JSON" in bad.text
    assert "{&#34;approved&#34;: true, &#34;by&#34;: &#34;carol&#34;, oops}</textarea>" in bad.text

    start = await client.post(
        "/workflows/start",
        data={"csrf": token, "workflow": "quick", "payload": "[1,", "run_id": "mine-1"},
    )
    assert start.status_code == 400 and "[1,</textarea>" in start.text
    assert 'value="mine-1"' in start.text

    sent = await client.post(
        "/events", data={"csrf": token, "name": "app/typed", "data": "{x", "id": "ev-typed"}
    )
    assert sent.status_code == 400 and "{x</textarea>" in sent.text
    assert 'value="app/typed"' in sent.text and 'value="ev-typed"' in sent.text


async def test_waits_in_full_an_event_with_its_match_and_each_condition_of_any(
    client: httpx.AsyncClient, tarry_app: tarry.App
) -> None:
    onboarding = await start(client, "onboarding", {"user": "u-7"})
    await wait_run(client, onboarding, "waiting")
    page = (await client.get(f"/runs/{onboarding}")).text
    waiting = page[
        page.index('id="waiting-for"') : page.index("</dd>", page.index('id="waiting-for"'))
    ]
    assert "app/done" in waiting
    assert "where <code>data.user = &#34;u-7&#34;</code>" in waiting
    assert "event &#39;app/done&#39; match &#39;data.user&#39;" in waiting  # the code's words

    first = await start(client, "first-of", {"user": "u-8"})
    await wait_run(client, first, "waiting")
    page = (await client.get(f"/runs/{first}")).text
    items = re.findall(r'<li class="condition (pending|arrived)">(.*?)</li>', page, re.S)
    texts = [re.sub(r"<[^>]+>", "", body) for _, body in items]
    assert [state for state, _ in items] == ["pending"] * 3
    assert "signal go:u-8" in texts[0]
    assert "event app/ping" in texts[1] and "if async.data.user == &#34;u-8&#34;" in texts[1]
    assert "message poke" in texts[2]


async def test_a_run_links_to_the_run_that_invoked_it_and_back(
    client: httpx.AsyncClient,
) -> None:
    parent = await start(client, "parent", {"order": "inv-1"})
    await wait_run(client, parent, "waiting")
    page = (await client.get(f"/runs/{parent}")).text
    found = re.search(r'id="children"><a href="/runs/([^"]+)">', page)
    assert found, "the parent's page does not list the run it invoked"
    child = found.group(1)
    await wait_run(client, child, "waiting")
    child_page = (await client.get(f"/runs/{child}")).text
    assert (
        f'id="trigger">run <a href="/runs/{parent}"><code>{parent}</code></a>, which invoked it'
        in child_page
    )


# -- runs search ----------------------------------------------------------------------------


async def test_search_by_id_and_workflow_prefix_status_and_time_with_counts(
    client: httpx.AsyncClient, tarry_app: tarry.App
) -> None:
    ids = [await start(client, "quick", {"n": n}, run_id=f"srch-{n}") for n in range(3)]
    for run_id in ids:
        await wait_run(client, run_id, "completed")
    waiting = await parked(client, "s-1")

    by_id = (await client.get("/", params={"q": "srch-1"})).text
    assert "srch-1" in by_id and "srch-0" not in by_id and waiting not in by_id
    by_prefix = (await client.get("/", params={"q": "srch-"})).text
    assert all(r in by_prefix for r in ids)
    assert re.search(
        r'data-status="completed"[^>]*><span class="badge completed">completed 3', by_prefix
    )

    wf = (await client.get("/", params={"workflow": "appr"})).text  # a prefix of "approval"
    assert waiting in wf and "srch-0" not in wf
    counts = re.findall(r'data-status="(\w+)"', (await client.get("/")).text)
    assert "completed" in counts and "waiting" in counts
    # the counts refresh on their own, less often than the table, which leaves them out
    counted = await client.get("/", params={"q": "srch-", "fragment": "counts"})
    assert counted.text.startswith('<nav class="counts" id="counts"')
    assert 'hx-trigger="every 10s"' in counted.text and "completed 3" in counted.text
    assert "<table" not in counted.text
    table = await client.get("/", params={"q": "srch-", "fragment": "table"})
    assert 'id="counts"' not in table.text and "srch-2" in table.text
    only = (await client.get("/", params={"status": "waiting"})).text
    assert waiting in only and "srch-0" not in only
    assert "completed 3" in only  # the counts are of the search without its status

    recent = (await client.get("/", params={"q": "srch-", "since": "1h"})).text
    assert "srch-2" in recent
    future = (await client.get("/", params={"q": "srch-", "since": "2999-01-01"})).text
    assert "srch-2" not in future and "No runs match this search" in future
    before = (await client.get("/", params={"q": "srch-", "until": "2000-01-01T00:00"})).text
    assert "srch-2" not in before


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "finished"}, "there is no run status &#39;finished&#39;: choose one of queued"),
        ({"since": "yesterday"}, "since &#39;yesterday&#39; is neither a duration ago"),
        ({"until": "2026-13-01"}, "until &#39;2026-13-01&#39; is neither"),
        ({"since": "1h", "until": "2h"}, "until must be later than since"),
        ({"q": "x" * 300}, "q is too long"),
    ],
)
async def test_a_bad_search_is_a_clear_error_with_the_form_kept(
    client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    response = await client.get("/", params={**params, "workflow": "kept-wf"})
    assert response.status_code == 400
    assert message in response.text and 'id="search-error"' in response.text
    assert 'value="kept-wf"' in response.text
    fragment = await client.get("/", params={**params, "fragment": "table"})
    assert fragment.status_code == 400 and message in fragment.text


# -- events and their runs -------------------------------------------------------------------


async def test_events_link_to_the_runs_they_started_and_resumed_and_back(
    client: httpx.AsyncClient, tarry_app: tarry.App
) -> None:
    onboarding = await start(client, "onboarding", {"user": "u-1"})
    await wait_run(client, onboarding, "waiting")
    done = await tarry_app.send_event("app/done", {"user": "u-1"}, id="ev-done")
    assert done.resumed == [onboarding]
    signup = await tarry_app.send_event("app/signup", {"user": "u-2"}, id="ev-signup")
    [welcomed] = signup.started
    await wait_run(client, welcomed, "completed")
    await wait_run(client, onboarding, "completed")

    page = (await client.get("/events")).text
    row = page[page.index('data-event="ev-done"') :]
    row = row[: row.index("</tr>")]
    assert f'<td class="links resumed"><a href="/runs/{onboarding}">' in row
    row = page[page.index('data-event="ev-signup"') :]
    row = row[: row.index("</tr>")]
    assert f'<td class="links started"><a href="/runs/{welcomed}">' in row

    detail = await client.get("/events/ev-signup")
    assert detail.status_code == 200 and welcomed in detail.text
    assert 'id="event-resumed">no run' in detail.text
    # each run links to the event that started it, and to the event its wait took
    run_page = (await client.get(f"/runs/{welcomed}")).text
    assert 'id="trigger">event <a href="/events/ev-signup"><code>app/signup</code></a>' in run_page
    resumed_page = (await client.get(f"/runs/{onboarding}")).text
    assert 'Event <a href="/events/ev-done">' in resumed_page
    assert "a start (API, CLI, dashboard or code)" in resumed_page

    # a wait_for_any keeps the event it took as the value of the condition that fired
    first = await start(client, "first-of", {"user": "u-3"})
    await wait_run(client, first, "waiting")
    ping = await tarry_app.send_event("app/ping", {"user": "u-3"}, id="ev-ping")
    assert ping.resumed == [first]
    await wait_run(client, first, "completed")
    detail = (await client.get("/events/ev-ping")).text
    assert f'id="event-resumed"><a href="/runs/{first}">' in detail
    assert 'Event <a href="/events/ev-ping">' in (await client.get(f"/runs/{first}")).text


# -- error pages ---------------------------------------------------------------------------


async def test_not_found_pages_never_name_the_database(
    client: httpx.AsyncClient, tarry_app: tarry.App
) -> None:
    for url, says in [
        ("/runs/no-such-run", "There is no run &#39;no-such-run&#39;"),
        ("/events/no-such-event", "There is no event &#39;no-such-event&#39;"),
        ("/no/such/page", "There is no page at /no/such/page"),
        ("/events/nul%00here", "There is no event &#39;nul\\x00here&#39;"),
        ("/events/" + "x" * 300, "There is no event &#39;xxx"),
    ]:
        response = await client.get(url)
        assert response.status_code == 404, url
        assert says in response.text and "All runs" in response.text
        assert "sqlite" not in response.text and tarry_app.database not in response.text
    token = csrf_of((await client.get("/workflows")).text)
    for path in ("/runs/nope/cancel", "/runs/nope/decide", "/runs/nope/retry"):
        response = await client.post(path, data={"csrf": token, "decision": "approve"})
        assert response.status_code == 404 and "sqlite" not in response.text, path
