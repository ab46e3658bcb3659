"""A run's page and its live part: the waterfall, the waits in full, the controls
the run's state allows, and what a failed form held (so an error keeps it).

The live part refreshes itself every 2 s by asking with the version it shows: an
unchanged run answers 204, a moved one the part again, controls and all, so an
ended run loses its Approve, Reject and Cancel without a reload.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import Request
from starlette.datastructures import FormData
from starlette.responses import Response

from ..errors import RunNotFound
from ..models import Run
from ..queued_reason import why_queued
from ..schedules import slot_of
from ..store.dashboard_records import RunDetail
from .answers import AnswerState, run_answerables
from .auth import Session
from .pages import NOTICES, deps, missing_run, render_page, store_of
from .run_view import waterfall
from .wait_view import event_id_of, wait_views

KEPT = ("by", "data", "name", "reason")
"""The fields of the run page's forms that an error gives back as typed."""


def kept_of(form: FormData | None) -> dict[str, str]:
    if form is None:
        return {}
    return {k: v for k in KEPT if isinstance(v := form.get(k), str)}


async def run_page_response(
    request: Request,
    session: Session,
    run_id: str,
    *,
    fragment: str = "",
    notice: str = "",
    error: str | None = None,
    status: int = 200,
    shown: str = "",
    form: FormData | None = None,
    answer: AnswerState | None = None,
) -> Response:
    app = deps(request)[0]
    try:
        # The version is read first: should the run move before it is read, the page
        # shows more than its version says, and the next refresh fetches it again.
        version = await app.run_version(run_id)
        if fragment == "live" and shown and shown == version:
            return Response(status_code=204)  # the page is current: nothing to swap
        run = await app.get_run(run_id)
    except RunNotFound:
        return missing_run(request, session, run_id)
    detail = await (await store_of(request)).run_detail(run_id)
    template = "run_live.html" if fragment == "live" else "run.html"
    return render_page(
        request,
        session,
        template,
        status,
        **run_context(run, detail),
        version=version,
        notice=NOTICES.get(notice),
        error=error,
        kept=kept_of(form),
        answer_state=answer,
        queued_reason=why_queued(run, app.clock.now()),
        cron_slot=slot_of(run.id, run.workflow),
    )


def run_context(run: Run, detail: RunDetail | None) -> dict[str, Any]:
    """What the run's page shows: the run, its waterfall, its waits in full, and where
    it came from (the event that started it, the run that invoked it) and led to."""
    trigger = None
    if detail is not None and detail.trigger is not None:
        try:
            event = orjson.loads(detail.trigger)
        except orjson.JSONDecodeError:  # written by tarry, but a page must not fail on it
            event = None
        if event_id_of(event) is not None:  # a run from ``start`` keeps a stand-in, no id
            trigger = event
    return {
        "run": run,
        "fall": waterfall(run, datetime.now(UTC)),
        "waits": wait_views(run, detail),
        "answers": run_answerables(run, detail),
        "trigger": trigger,
        "parent": detail.parent if detail else None,
        "children": detail.children if detail else [],
    }
