"""The approvals inbox and the schema forms in real Chromium, against ``tarry serve``:
the inbox lists a typed approval and a typed message wait and approves from the list;
a schema form refuses a wrong value beside its field, keeping what was typed, then
resumes the run with the model; a token's link opens a page whose form completes it.
Needs Chromium at /usr/bin/chromium (``apt-get install -y chromium``)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from cli.conftest import ROOT, Tarry

from .test_dashboard_browser import serve, wait_status
from .test_debug_browser import start

pytestmark = pytest.mark.slow

TARGET = str(ROOT / "tests" / "server" / "person_target.py")


@pytest.fixture
def served(tarry: Tarry) -> Any:
    base, proc = serve(tarry, None, TARGET)
    yield base
    stop(proc)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    assert proc.wait(15) == 0


def test_the_inbox_lists_typed_waits_and_approves_from_the_list(served: str, browser: Any) -> None:
    base = served
    approval = start(base, "typed-approval", {"id": "b-1"})
    order = start(base, "typed-order", {})
    wait_status(base, approval, "waiting")
    wait_status(base, order, "waiting")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(f"{base}/")
    page.locator("#inbox-count:has-text('2')").wait_for(timeout=10_000)  # the navigation
    page.click("#nav-inbox")
    page.wait_for_url("**/inbox")

    first = page.locator(f"article[data-run='{approval}']")
    second = page.locator(f"article[data-run='{order}']")
    assert "typed-approval" in first.inner_text() and "signal approve:b-1" in first.inner_text()
    assert "typed-order" in second.inner_text() and "message order" in second.inner_text()
    assert second.locator("[data-path='$.quantity'] input").count() == 1
    assert second.locator("button:has-text('Approve')").count() == 0
    # the soonest deadline first: the approval has one, the order none
    runs = page.locator("article.inbox-item").evaluate_all("els => els.map(e => e.dataset.run)")
    assert runs == [approval, order]

    first.locator("input[name=by]").fill("ivy")
    first.locator("button:has-text('Approve')").click()
    page.wait_for_url("**/inbox?notice=delivered")
    run = wait_status(base, approval, "completed")
    assert run["output"] == {
        "type": "Approval",
        "decision": {"approved": True, "by": "ivy", "comment": None},
    }
    page.locator(f"article[data-run='{approval}']").wait_for(state="detached", timeout=10_000)
    assert page.locator(f"article[data-run='{order}']").count() == 1


def test_a_wrong_value_is_shown_beside_its_field_and_what_was_typed_is_kept(
    served: str, browser: Any
) -> None:
    base = served
    order = start(base, "typed-order", {"timeout": "2h"})
    wait_status(base, order, "waiting")
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    page.goto(f"{base}/runs/{order}")
    form = page.locator("#decide form.answer")
    form.locator("[data-path='$.quantity'] input").fill("250")
    form.locator("[data-path='$.colour'] select").select_option(label="green")
    form.locator("[data-path='$.note'] input").fill("leave at the door")
    form.locator("[data-path='$.tags'] textarea").fill("gift\nfragile")
    form.locator("[data-path='$.address.city'] input").fill("Lyon")
    form.locator("button:has-text('Send')").click()

    quantity = page.locator("#decide [data-path='$.quantity']")
    quantity.locator(".field-errors").wait_for(timeout=10_000)
    assert "should be at most 100, got 250" in quantity.locator(".field-errors").inner_text()
    assert quantity.locator("input").input_value() == "250"
    kept = page.locator("#decide form.answer")
    assert kept.locator("[data-path='$.note'] input").input_value() == "leave at the door"
    assert kept.locator("[data-path='$.colour'] select").input_value() == '"green"'
    assert kept.locator("[data-path='$.tags'] textarea").input_value() == "gift\nfragile"
    assert kept.locator("[data-path='$.address.city'] input").input_value() == "Lyon"
    assert page.locator("#run-status").inner_text() == "waiting"

    quantity.locator("input").fill("25")
    kept.locator("button:has-text('Send')").click()
    page.wait_for_url(f"**/runs/{order}?notice=message")
    run = wait_status(base, order, "completed")
    assert run["output"] == {
        "type": "Order",
        "order": {
            "quantity": 25,
            "colour": "green",
            "note": "leave at the door",
            "express": False,
            "tags": ["gift", "fragile"],
            "address": {"city": "Lyon", "postcode": None},
        },
    }
    page.locator("#run-status:has-text('completed')").wait_for(timeout=10_000)


def test_a_tokens_link_shows_the_form_and_sending_it_completes_the_token(
    served: str, browser: Any
) -> None:
    base = served
    run_id = start(base, "typed-token", {})
    run = wait_status(base, run_id, "waiting")
    link = next(s["output"] for s in run["steps"] if s["id"] == "link")
    assert link.startswith(f"{base}/api/v1/tokens/")
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(link)
    assert page.locator("h1").inner_text() == "order-form"
    form = page.locator("#token-form")
    form.locator("[data-path='$.quantity'] input").fill("2")
    form.locator("[data-path='$.colour'] select").select_option(label="blue")
    assert wait_status(base, run_id, "waiting")["status"] == "waiting"  # the page changed nothing
    form.locator("button:has-text('Send')").click()
    page.locator("#token-notice:has-text('your answer was recorded')").wait_for(timeout=10_000)
    done = wait_status(base, run_id, "completed")
    assert done["output"]["type"] == "Order"
    assert done["output"]["order"]["quantity"] == 2 and done["output"]["order"]["colour"] == "blue"
    page.goto(link)
    assert "a request is answered once" in page.locator("#token-state").inner_text()
