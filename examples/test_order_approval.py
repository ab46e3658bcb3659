"""The order-approval workflow (order_approval.py) tested five ways on virtual time.

Copy this file next to your own workflows: each test runs the real workflow on
an in-memory store with a clock that moves only when told, so the 7-day
approval timeout is tested in milliseconds. ``tarry_env`` is the fixture tarry's
pytest plugin provides; ``tarry_app`` (below) tells it which App to run.
"""

from __future__ import annotations

import pytest

import tarry
from order_approval import app
from tarry.testing import Environment

ORDER = {"order_id": 42}  # even ids total 72,000: over 50,000, so they need approval
SIGNAL = "approval:order-42"


@pytest.fixture
def tarry_app() -> tarry.App:
    return app


async def test_approved(tarry_env: Environment) -> None:
    run_id = await tarry_env.start("fulfill-order", ORDER)
    waiting = await tarry_env.waiting(run_id)
    assert waiting is not None and f"signal {SIGNAL}" in waiting.conditions
    await tarry_env.send_signal(SIGNAL, {"approved": True, "by": "alice"})
    assert await tarry_env.result(run_id) == {"shipped": 42, "parcel": "parcel-42"}


async def test_approved_with_the_emailed_link(tarry_env: Environment) -> None:
    run_id = await tarry_env.start("fulfill-order", ORDER)
    await tarry_env.waiting(run_id)
    steps = {s.id: s for s in (await tarry_env.get_run(run_id)).steps}
    link = steps["email-approvers"].output  # what the approvers were sent
    assert "/api/v1/tokens/" in link and "?sig=" in link
    token_id = steps["approve-link"].output["id"]
    await tarry_env.app.complete_token(token_id, {"approved": True, "by": "dana"})
    assert await tarry_env.result(run_id) == {"shipped": 42, "parcel": "parcel-42"}


async def test_rejected(tarry_env: Environment) -> None:
    ship = tarry_env.mock_step("fulfill-order", "ship", return_value="never")
    run_id = await tarry_env.start("fulfill-order", ORDER)
    await tarry_env.send_signal(SIGNAL, {"approved": False, "by": "bob"})
    with pytest.raises(tarry.RunCancelled, match="rejected by bob"):
        await tarry_env.result(run_id)
    assert ship.call_count == 0


async def test_timed_out_after_seven_days(tarry_env: Environment) -> None:
    run_id = await tarry_env.start("fulfill-order", ORDER)
    await tarry_env.advance("6d23h59m")
    assert (await tarry_env.get_run(run_id)).status == "waiting"
    await tarry_env.advance("1m")
    with pytest.raises(tarry.RunCancelled, match="approval timed out - order held"):
        await tarry_env.result(run_id)


def test_approved_after_six_days_23_hours(tarry_env: Environment) -> None:
    # The same environment from a synchronous test: the *_sync twins.
    run_id = tarry_env.start_sync("fulfill-order", ORDER)
    tarry_env.advance_sync("6d23h")
    tarry_env.send_signal_sync(SIGNAL, {"approved": True, "by": "carol"})
    assert tarry_env.result_sync(run_id) == {"shipped": 42, "parcel": "parcel-42"}
    assert tarry_env.get_run_sync(run_id).steps[-1].id == "ship"
