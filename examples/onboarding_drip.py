"""An onboarding drip: wait up to 3 days for a new user to finish onboarding,
and nudge them by e-mail if they have not.

A run starts for every ``app/account.created`` event. It parks on the
``app/onboarding.completed`` event whose ``data.userId`` matches the one that
started it; if none comes within 3 days it sends the nudge.
"""

from __future__ import annotations

from typing import Any

import tarry

app = tarry.App()


def send_nudge_email(email: str) -> str:
    # A real service would call its mail provider here.
    raise RuntimeError(f"no mail provider configured; would nudge {email}")


@app.workflow("onboarding-drip", on="app/account.created")
async def onboarding_drip(ctx: tarry.Context, step: tarry.Step) -> dict[str, Any]:
    assert ctx.event is not None
    user = ctx.event.data
    done = await step.wait_for_event(
        "wait-onboarded", event="app/onboarding.completed", match="data.userId", timeout="3d"
    )
    if done is not None:
        return {"user": user["userId"], "onboarded": True}
    message_id = await step.run("send-nudge", send_nudge_email, user["email"])
    return {"user": user["userId"], "onboarded": False, "nudge": message_id}
