"""The run page in real Chromium for a run waiting for all of two conditions: both
pending, then, as the page refreshes itself, the one that arrived marked so."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from cli.conftest import ROOT, Tarry

from .test_dashboard_browser import serve

pytestmark = pytest.mark.slow

TARGET = str(ROOT / "tests" / "server" / "parallel_target.py")


def test_run_page_lists_pending_and_arrived_conditions(tarry: Tarry, browser: Any) -> None:
    base, proc = serve(tarry, None, TARGET)
    started = httpx.post(
        f"{base}/api/v1/runs", json={"workflow": "documents", "payload": {"order": "b-1"}}
    )
    run_id = started.json()["run_id"]
    give_up = time.monotonic() + 20
    while httpx.get(f"{base}/api/v1/runs/{run_id}").json()["status"] != "waiting":
        assert time.monotonic() < give_up
        time.sleep(0.05)

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(f"{base}/runs/{run_id}")
    waiting = page.locator("#waiting-for")
    assert "0 of 2 arrived" in waiting.inner_text()
    pending = page.locator("#waiting-for li.condition.pending")
    assert pending.all_inner_texts() == [
        "… signal contract:b-1 pending",
        "… message payment pending",
    ]
    assert page.locator("#waiting-for li.condition.arrived").count() == 0

    sent = httpx.post(f"{base}/api/v1/runs/{run_id}/messages", json={"name": "payment"})
    assert sent.status_code == 202
    arrived = page.locator("#waiting-for li.condition.arrived")
    arrived.wait_for(timeout=15_000)  # the live section refreshes itself every 2 s
    assert arrived.all_inner_texts() == ["✓ message payment arrived"]
    assert pending.all_inner_texts() == ["… signal contract:b-1 pending"]
    assert "1 of 2 arrived" in waiting.inner_text()
    # the arrived one is listed first, in arrival order
    items = page.locator("#waiting-for li.condition").all_inner_texts()
    assert items == ["✓ message payment arrived", "… signal contract:b-1 pending"]
    proc.terminate()
    assert proc.wait(15) == 0
