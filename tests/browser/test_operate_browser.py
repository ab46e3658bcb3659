"""Operating failed runs in real Chromium: read a traceback, Retry, Rerun from here, Retry all.

Serves the server tests' workflows (tests/server/flows.py) with ``tarry serve``:
"fragile" fails at its "charge" step while the file its payload names is missing,
so creating the file is the fix that a retry then picks up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.conftest import TARGET, Tarry

from .test_dashboard_browser import serve, wait_status

pytestmark = pytest.mark.slow


def failed_run(base: str, gate: Path) -> str:
    response = httpx.post(
        f"{base}/api/v1/runs", json={"workflow": "fragile", "payload": {"gate": str(gate)}}
    )
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run_id"]
    wait_status(base, run_id, "failed")
    return run_id


def test_read_the_traceback_retry_and_rerun(tarry: Tarry, browser: Any, tmp_path: Path) -> None:
    base, proc = serve(tarry, None, TARGET)
    gate = tmp_path / "gate"
    run_id = failed_run(base, gate)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(f"{base}/runs/{run_id}")
    assert page.locator("#run-status").inner_text() == "failed"

    # each failed attempt's traceback is folded away until asked for
    first = page.locator("ol.failed-attempts details.traceback").first
    trace = first.locator("pre")
    assert not trace.is_visible()
    first.locator("summary").click()
    trace.wait_for(state="visible")
    assert "ConnectionError: the gate" in trace.inner_text()
    assert "Traceback (most recent call last)" in trace.inner_text()

    gate.touch()  # the fix is deployed
    page.fill("form.retry input[name=by]", "alice")
    page.click("button:has-text('Retry')")
    page.wait_for_url(f"**/runs/{run_id}?notice=retried")
    page.locator("#run-status:has-text('completed')").wait_for(timeout=15_000)
    assert "Retried by alice" in page.locator("#changes").inner_text()
    assert '"charged"' in page.locator("#run-output").inner_text()

    # rerun from the "charge" step: a new run, whose page comes next
    page.locator("li.step:has(code.step-id:text-is('charge')) button.small").click()
    page.wait_for_url("**?notice=forked")
    assert f"/runs/{run_id}?" not in page.url
    page.locator("#run-status:has-text('completed')").wait_for(timeout=15_000)
    page.click(f"#changes a:has-text('{run_id}')")
    page.wait_for_url(f"**/runs/{run_id}")

    # two more fail; the failed runs list offers to retry both, counted first
    gate.unlink()
    more = [failed_run(base, gate) for _ in range(2)]
    page.goto(f"{base}/?status=failed&workflow=fragile")
    button = page.locator("#retry-all button")
    assert button.inner_text() == "Retry all 2"
    assert all(wait_status(base, r, "failed")["changes"] == [] for r in more)
    gate.touch()
    button.click()
    page.wait_for_url("**/?workflow=fragile&retried=2")
    assert "Retried 2 runs" in page.locator("p.notice").inner_text()
    for r in more:
        wait_status(base, r, "completed")
    proc.terminate()
    assert proc.wait(15) == 0
