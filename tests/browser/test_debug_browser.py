"""The dashboard for debugging in real Chromium: the waterfall, the runs search,
controls that follow the run, forms that keep their input, Cancel's confirmation,
and an open tab that still approves after the server restarts.

Serves tests/server/debug_target.py with ``tarry serve``. With
``TARRY_UPDATE_SCREENSHOT=1`` the checkout run's page is saved as docs/run-page.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.conftest import ROOT, Tarry, free_port

from .test_dashboard_browser import serve, wait_status

pytestmark = pytest.mark.slow

TARGET = str(ROOT / "tests" / "server" / "debug_target.py")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    assert proc.wait(15) == 0


def start(base: str, workflow: str, payload: Any, run_id: str | None = None) -> str:
    body = {"workflow": workflow, "payload": payload, **({"run_id": run_id} if run_id else {})}
    response = httpx.post(f"{base}/api/v1/runs", json=body)
    assert response.status_code == 201, response.text
    started: str = response.json()["run_id"]
    return started


def test_waterfall_search_live_controls_kept_input_and_cancel(tarry: Tarry, browser: Any) -> None:
    base, proc = serve(tarry, None, TARGET)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})

    # the waterfall: a charge that failed twice, its backoffs, the pause, the wait
    checkout = start(base, "checkout", {"order": 1042}, run_id="checkout-1042")
    give_up = time.monotonic() + 20
    while (wait_status(base, checkout, "waiting")["waiting_for"] or {}).get("kind") != "signal":
        assert time.monotonic() < give_up, "the checkout never parked on its approval"
        time.sleep(0.05)
    page.goto(f"{base}/runs/{checkout}")
    charge = page.locator(".wf-row[data-step='charge']")
    assert charge.locator(".wf-bar.failed").count() == 2
    assert charge.locator(".wf-bar.backoff").count() == 2
    assert charge.locator(".wf-bar.attempt").count() == 1
    assert "timed out (attempt 1)" in (
        charge.locator(".wf-bar.failed").first.get_attribute("title") or ""
    )
    assert page.locator(".wf-row[data-step='cool-off'] .wf-bar.parked").count() == 1
    assert page.locator(".wf-row[data-step='wait-approval'] .wf-bar.parked").count() == 1
    assert "2 retries" in page.locator(".wf-summary").inner_text()
    shot = Path(os.environ.get("TMPDIR", "/tmp")) / f"run-page-{os.getpid()}.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("TARRY_UPDATE_SCREENSHOT"):
        shutil.copy(shot, ROOT / "docs" / "run-page.png")
    shot.unlink()
    charge.locator("a.wf-label").click()  # a row leads to the step's record and tracebacks
    assert page.url.endswith("#step-charge")
    assert page.locator("#step-charge ol.failed-attempts li").count() == 2

    # kept input: a payload that is not JSON comes back as typed, with the error (a wait
    # without a schema gets the JSON box; Approve/Reject are for the approval shape)
    data = page.locator("#decide textarea[name=data]")
    data.fill('{"approved": true, oops')
    page.click("#decide button:has-text('Send')")
    assert "data is not valid JSON" in page.locator("#form-error").inner_text()
    assert data.input_value() == '{"approved": true, oops'

    # controls follow the run: a refresh that brings a change keeps what is being typed,
    # and once the run is approved elsewhere, the form and Cancel go, no reload
    data.fill('{"typed": "while refreshing"}')
    shown = page.locator("#live").get_attribute("hx-get")
    note = httpx.post(f"{base}/api/v1/runs/{checkout}/messages", json={"name": "note", "data": {}})
    assert note.status_code == 202
    page.wait_for_function(
        "shown => document.querySelector('#live').getAttribute('hx-get') !== shown", arg=shown
    )
    assert data.input_value() == '{"typed": "while refreshing"}'
    sent = httpx.post(
        f"{base}/api/v1/signals", json={"signal": "checkout:1042", "data": {"approved": True}}
    )
    assert sent.json()["status"] == "delivered"
    page.locator("#run-status:has-text('completed')").wait_for(timeout=10_000)
    for gone in ("#decide", "#cancel", "button:has-text('Approve')"):
        assert page.locator(gone).count() == 0, gone

    # Cancel asks first, and takes a reason
    parked = start(base, "approval", {"order": "b-9"}, run_id="parked-b9")
    wait_status(base, parked, "waiting")
    page.goto(f"{base}/runs/{parked}")
    confirm = page.locator("button:has-text('Yes, cancel this run')")
    assert not confirm.is_visible()
    page.click("#cancel summary")
    page.fill("#cancel-reason", "customer changed their mind")
    confirm.click()
    page.wait_for_url(f"**/runs/{parked}?notice=cancelled")
    assert page.locator("#run-status").inner_text() == "cancelled"
    assert "customer changed their mind" in page.locator("#run-error").inner_text()

    # the runs search: id prefix, workflow prefix, counts, a bogus status is an error
    for n in range(3):
        start(base, "quick", {"n": n}, run_id=f"find-{n}")
    page.goto(f"{base}/")
    page.fill("input[name=q]", "find-1")
    page.click("button:has-text('Search')")
    page.wait_for_url("**/?q=find-1**")
    assert page.locator("#runs tbody tr").count() == 1
    page.fill("input[name=q]", "")
    page.fill("input[name=workflow]", "check")
    page.click("button:has-text('Search')")
    assert page.locator("#runs tbody tr").all_inner_texts()[0].startswith(checkout)
    page.goto(f"{base}/?q=find-")
    page.locator("#counts a[data-status='completed']:has-text('completed 3')").wait_for()
    page.goto(f"{base}/?status=done")
    assert "there is no run status 'done'" in page.locator("#search-error").inner_text()
    stop(proc)


def test_an_open_tab_approves_after_the_server_restarts(tarry: Tarry, browser: Any) -> None:
    port = free_port()
    base, proc = serve(tarry, None, TARGET, port=port)
    run_id = start(base, "approval", {"order": "restart-1"})
    wait_status(base, run_id, "waiting")
    page = browser.new_page()
    page.goto(f"{base}/runs/{run_id}")
    page.fill("#decide textarea[name=data]", '{"approved": true, "by": "rita"}')
    stop(proc)  # tarry dev restarting, a deploy: the tab stays open

    base, proc = serve(tarry, None, TARGET, port=port)
    page.click("#decide button:has-text('Send')")
    page.wait_for_url(f"**/runs/{run_id}?notice=delivered")
    assert wait_status(base, run_id, "completed")["output"] == {"approved_by": "rita"}
    page.locator("#run-status:has-text('completed')").wait_for(timeout=10_000)

    # a form from a session the server does not know keeps the decision to send again
    other = start(base, "approval", {"order": "restart-2"})
    wait_status(base, other, "waiting")
    page.goto(f"{base}/runs/{other}")
    page.fill("#decide textarea[name=data]", '{"approved": false, "by": "sam"}')
    page.context.clear_cookies()
    page.click("#decide button:has-text('Send')")
    assert "Send this again?" in page.locator("h1").inner_text()
    assert "sam" in page.locator("#resubmit dl").inner_text()
    assert wait_status(base, other, "waiting")["status"] == "waiting"
    page.click("button:has-text('Send again')")
    page.wait_for_url(f"**/runs/{other}?notice=delivered")
    assert wait_status(base, other, "cancelled")["error"]["message"] == "rejected by sam"
    stop(proc)
