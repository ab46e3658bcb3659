"""The dashboard in real Chromium: find the parked order, approve it, watch it complete.

Runs ``tarry serve examples/order_approval.py`` as a real process. Needs Chromium
at /usr/bin/chromium (``apt-get install -y chromium``; ``.ci/run`` installs it).
With ``TARRY_UPDATE_SCREENSHOT=1`` the parked run's page is saved as
docs/dashboard.png.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.conftest import ROOT, Tarry, free_port, read_line

pytestmark = pytest.mark.slow

EXAMPLE = str(ROOT / "examples" / "order_approval.py")
TOKEN = "browser-token"


def serve(
    tarry: Tarry, token: str | None, target: str = EXAMPLE, *, port: int | None = None
) -> tuple[str, subprocess.Popen[str]]:
    """``tarry serve TARGET`` on ``port`` (a free one by default), once its API answers."""
    port = free_port() if port is None else port
    env = {"TARRY_API_TOKEN": token} if token else None
    proc = tarry.spawn("serve", target, "--port", str(port), env=env)
    read_line(proc, "dashboard at")
    base = f"http://127.0.0.1:{port}"
    give_up = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/api/v1/openapi.json").status_code == 200:
                return base, proc
        except httpx.TransportError:
            pass
        assert time.monotonic() < give_up, "the server did not come up"
        time.sleep(0.05)


def wait_status(base: str, run_id: str, status: str) -> dict[str, Any]:
    """The run as the API shows it, once it has ``status`` (within 20 s)."""
    give_up = time.monotonic() + 20
    while True:
        run: dict[str, Any] = httpx.get(f"{base}/api/v1/runs/{run_id}").json()
        if run["status"] == status:
            return run
        assert time.monotonic() < give_up, f"run {run_id} still {run['status']}"
        time.sleep(0.05)


def park_order(base: str, order_id: int, token: str | None) -> str:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"{base}/api/v1/runs",
        json={"workflow": "fulfill-order", "payload": {"order_id": order_id}},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run_id"]
    give_up = time.monotonic() + 20
    while httpx.get(f"{base}/api/v1/runs/{run_id}", headers=headers).json()["status"] != "waiting":
        assert time.monotonic() < give_up
        time.sleep(0.05)
    return run_id


def approve_in_the_browser(
    page: Any, base: str, run_id: str, order_id: int, token: str | None
) -> None:
    page.goto(f"{base}/")
    # the runs list refreshes itself (htmx): a run started now shows up without a reload
    later = park_order(base, order_id + 2, token)
    page.locator(f"#runs a:has-text('{later}')").wait_for(timeout=10_000)

    page.click(f"a:has-text('{run_id}')")
    page.wait_for_url(f"**/runs/{run_id}")
    waiting = page.locator("#waiting-for")
    assert f"approval:order-{order_id}" in waiting.inner_text()
    assert "until" in waiting.inner_text()
    assert page.locator("#run-status").inner_text() == "waiting"
    page.fill("input[name=by]", "alice")
    page.click("button:has-text('Approve')")
    page.wait_for_url(f"**/runs/{run_id}?notice=delivered")
    # the timeline refreshes itself until the run has ended
    page.locator("#run-status:has-text('completed')").wait_for(timeout=15_000)
    assert f"parcel-{order_id}" in page.locator("#run-output").inner_text()
    assert "ship" in page.locator("ol.timeline").inner_text()


def test_approve_a_parked_order(tarry: Tarry, browser: Any, tmp_path: Path) -> None:
    base, proc = serve(tarry, None)
    order_id = 42
    run_id = park_order(base, order_id, None)
    page = browser.new_page(viewport={"width": 1200, "height": 900})

    page.goto(f"{base}/runs/{run_id}")
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("TARRY_UPDATE_SCREENSHOT"):
        shutil.copy(shot, ROOT / "docs" / "dashboard.png")

    approve_in_the_browser(page, base, run_id, order_id, None)
    proc.terminate()
    assert proc.wait(15) == 0


def test_approve_with_a_token(tarry: Tarry, browser: Any) -> None:
    base, proc = serve(tarry, TOKEN)
    order_id = 44
    run_id = park_order(base, order_id, TOKEN)
    page = browser.new_page()
    page.goto(f"{base}/runs/{run_id}")
    page.wait_for_url(re.compile(r"/login\?next=/runs/"))
    page.fill("input[name=token]", "wrong")
    page.click("button:has-text('Log in')")
    assert "not valid" in page.locator("p.error").inner_text()
    page.fill("input[name=token]", TOKEN)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"**/runs/{run_id}")
    cookie = next(c for c in page.context.cookies() if c["name"] == "tarry_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    approve_in_the_browser(page, base, run_id, order_id, TOKEN)
    proc.terminate()
    assert proc.wait(15) == 0
