"""The onboarding drip (onboarding_drip.py) tested both ways, its e-mail step mocked."""

from __future__ import annotations

from datetime import timedelta

import pytest

import tarry
from onboarding_drip import app
from tarry.testing import Environment

ACCOUNT = {"userId": "u-7", "email": "ada@example.com"}


@pytest.fixture
def tarry_app() -> tarry.App:
    return app


async def test_onboarded_in_time_sends_no_nudge(tarry_env: Environment) -> None:
    nudge = tarry_env.mock_step("onboarding-drip", "send-nudge", return_value="msg-1")
    sent = await tarry_env.send_event("app/account.created", ACCOUNT)
    [run_id] = sent.started
    await tarry_env.advance("2d")
    # Another user's completion does not match this run's wait.
    await tarry_env.send_event("app/onboarding.completed", {"userId": "u-8"})
    assert (await tarry_env.waiting(run_id)) is not None
    await tarry_env.send_event("app/onboarding.completed", {"userId": "u-7"})
    assert await tarry_env.result(run_id) == {"user": "u-7", "onboarded": True}
    assert nudge.call_count == 0


async def test_not_onboarded_after_three_days_is_nudged(tarry_env: Environment) -> None:
    nudge = tarry_env.mock_step("onboarding-drip", "send-nudge", return_value="msg-1")
    [run_id] = (await tarry_env.send_event("app/account.created", ACCOUNT)).started
    waiting = await tarry_env.waiting(run_id)
    assert waiting is not None and waiting.kind == "event"
    assert waiting.expires_at == tarry_env.now + timedelta(days=3)
    await tarry_env.advance("3d")
    assert await tarry_env.result(run_id) == {"user": "u-7", "onboarded": False, "nudge": "msg-1"}
    assert [call.args for call in nudge.calls] == [("ada@example.com",)]
