"""The dashboard's Retry, Rerun from here and Retry all: pages, forms, CSRF and login."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx

import tarry

from .conftest import TOKEN, wait_run
from .test_dashboard import csrf_of, parked
from .test_operate_api import failed_run


async def test_a_failed_run_page_shows_its_attempts_and_offers_retry(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    run_id = await failed_run(client, tmp_path / "<gate>")
    html = (await client.get(f"/runs/{run_id}")).text
    assert html.count("failed-attempts") == 1
    assert "Attempt 1 failed" in html and "Attempt 2 failed" in html
    # each attempt's traceback folds away; the run's own is shown open
    assert html.count('<details class="traceback">') == 2
    assert html.count('<details class="traceback" open>') == 1
    assert "ConnectionError" in html and "Traceback (most recent call last)" in html
    assert "&lt;gate&gt;" in html and "<gate>" not in html  # escaped
    assert f'action="/runs/{run_id}/retry"' in html and ">Retry</button>" in html
    # an ended run: every step can be rerun from
    assert html.count("Rerun from here") == 2  # prepare and charge
    assert "Cancel run" not in html


async def test_retry_button(client: httpx.AsyncClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    run_id = await failed_run(client, gate)
    token = csrf_of((await client.get(f"/runs/{run_id}")).text)
    gate.touch()
    response = await client.post(f"/runs/{run_id}/retry", data={"csrf": token, "by": "erin"})
    assert response.status_code == 303
    assert response.headers["location"] == f"/runs/{run_id}?notice=retried"
    await wait_run(client, run_id, "completed")
    html = (await client.get(response.headers["location"])).text
    assert "Retry requested" in html
    assert re.search(r"Retried\s+by erin", html)
    assert ">Retry</button>" not in html  # completed: nothing to retry
    # a stale form on a completed run: the page again, with why
    again = await client.post(f"/runs/{run_id}/retry", data={"csrf": token})
    assert again.status_code == 409 and "fork it" in again.text
    missing = await client.post("/runs/nope/retry", data={"csrf": token})
    assert missing.status_code == 404


async def test_retry_is_offered_on_a_cancelled_run_only_once_it_ended(
    client: httpx.AsyncClient,
) -> None:
    run_id = await parked(client, "dash-r1")
    html = (await client.get(f"/runs/{run_id}")).text
    assert ">Retry</button>" not in html and "Rerun from here" not in html
    token = csrf_of(html)
    refused = await client.post(f"/runs/{run_id}/retry", data={"csrf": token})
    assert refused.status_code == 409 and "cancel it first" in refused.text
    await client.post(f"/runs/{run_id}/cancel", data={"csrf": token})
    await wait_run(client, run_id, "cancelled")
    assert ">Retry</button>" in (await client.get(f"/runs/{run_id}")).text
    response = await client.post(f"/runs/{run_id}/retry", data={"csrf": token})
    assert response.status_code == 303
    run = await wait_run(client, run_id, "waiting")
    assert run["changes"][0]["detail"]["by"] == "dashboard"


async def test_rerun_from_here_forks_and_shows_the_new_run(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    response = await client.post(
        "/api/v1/runs", json={"workflow": "fragile", "payload": {"gate": str(gate)}}
    )
    original = response.json()["run_id"]
    await wait_run(client, original, "completed")
    html = (await client.get(f"/runs/{original}")).text
    assert html.count("Rerun from here") == 3
    token = csrf_of(html)
    fork = await client.post(f"/runs/{original}/fork", data={"csrf": token, "from_step": "charge"})
    assert fork.status_code == 303
    found = re.fullmatch(r"/runs/([^?]+)\?notice=forked", fork.headers["location"])
    assert found and found.group(1) != original
    new = found.group(1)
    assert (await wait_run(client, new, "completed"))["forked_from"]["step"] == "charge"
    page = (await client.get(fork.headers["location"])).text
    assert "Forked:" in page
    assert f'Forked from <a href="/runs/{original}"><code>{original}</code></a>' in page
    unknown = await client.post(f"/runs/{original}/fork", data={"csrf": token, "from_step": "x"})
    assert unknown.status_code == 400 and "recorded no step" in unknown.text
    assert "&#39;charge&#39;" in unknown.text  # the message lists the steps
    live = await parked(client, "dash-f1")
    refused = await client.post(f"/runs/{live}/fork", data={"csrf": token, "from_step": "prepare"})
    assert refused.status_code == 409 and "only an ended run" in refused.text
    missing = await client.post("/runs/nope/fork", data={"csrf": token, "from_step": "a"})
    assert missing.status_code == 404


async def test_retry_all_on_the_failed_runs_list(
    client: httpx.AsyncClient, tmp_path: Path, tarry_app: tarry.App
) -> None:
    gate = tmp_path / "gate"
    failed = [await failed_run(client, gate) for _ in range(3)]
    assert "Retry all" not in (await client.get("/")).text
    assert "Retry all" not in (await client.get("/", params={"status": "completed"})).text
    assert "Retry all" not in (await client.get("/", params={"workflow": "quick"})).text
    page = await client.get("/", params={"status": "failed"})
    assert "Retry all 3</button>" in page.text and "counted by a dry run" in page.text
    mine = await client.get("/", params={"status": "failed", "workflow": "fragile"})
    assert "Retry all 3</button>" in mine.text
    other = await client.get("/", params={"status": "failed", "workflow": "approval"})
    assert "Retry all" not in other.text
    fragment = await client.get("/", params={"status": "failed", "fragment": "table"})
    assert "Retry all 3</button>" in fragment.text
    for run_id in failed:  # showing the count changed nothing
        assert (await tarry_app.get_run(run_id)).changes == []

    gate.touch()
    response = await client.post(
        "/runs/retry", data={"csrf": csrf_of(page.text), "workflow": "fragile"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/?workflow=fragile&retried=3"
    for run_id in failed:
        await wait_run(client, run_id, "completed")
    assert "Retried 3 runs" in (await client.get(response.headers["location"])).text
    bad = await client.post("/runs/retry", data={"csrf": csrf_of(page.text), "workflow": "x" * 300})
    assert bad.status_code == 400 and "over the limit" in bad.text


async def test_the_new_forms_need_the_csrf_token_and_a_login(
    make_client: Callable[..., httpx.AsyncClient], tmp_path: Path
) -> None:
    async with make_client(token=TOKEN) as c:
        good = {"authorization": f"Bearer {TOKEN}"}
        run_id = await failed_run(c, tmp_path / "gate", headers=good)
        for path, form in (
            (f"/runs/{run_id}/retry", {}),
            (f"/runs/{run_id}/fork", {"from_step": "prepare"}),
            ("/runs/retry", {}),
        ):
            login = await c.get("/login")
            anonymous = await c.post(path, data={**form, "csrf": csrf_of(login.text)})
            assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
            for csrf in (None, "", "forged"):
                data = form if csrf is None else {**form, "csrf": csrf}
                assert (await c.post(path, data=data)).status_code == 403, (path, csrf)
        run = await wait_run(c, run_id, "failed", headers=good)
        assert run["changes"] == []
        assert (await c.get("/api/v1/runs", headers=good)).json()["items"][0]["id"] == run_id
