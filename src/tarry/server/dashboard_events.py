"""The dashboard's workflows and events: start a run, send an event, and see what each
event received did (the runs it started, the runs it resumed).

A form that fails (bad JSON, an unknown workflow) comes back with what was typed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from .. import serde
from ..errors import TarryError
from ..models import Event, to_datetime
from .auth import Session
from .event_links import links_of
from .pages import (
    deps,
    enter,
    form_json,
    form_text,
    read_post,
    redirect_to,
    render_page,
    status_of,
    store_of,
)

router = APIRouter(include_in_schema=False)


@router.get("/workflows")
async def workflows_page(request: Request) -> Response:
    session, gate = await enter(request)
    if gate is not None:
        return gate
    app = deps(request)[0]
    return render_page(
        request, session, "workflows.html", workflows=list(app.workflows.values()), kept={}
    )


@router.post("/workflows/start")
async def start(request: Request) -> Response:
    session, form, gate = await read_post(request)
    if gate is not None:
        return gate
    app = deps(request)[0]
    workflow = form_text(form, "workflow")
    try:
        run_id = await app.start(
            workflow,
            form_json(form, "payload", None),
            run_id=form_text(form, "run_id") or None,
        )
    except (TarryError, ValueError) as exc:
        kept = {k: form_text(form, k) for k in ("workflow", "payload", "run_id")}
        return render_page(
            request,
            session,
            "workflows.html",
            status_of(exc),
            workflows=list(app.workflows.values()),
            error=str(exc),
            kept=kept,
        )
    return redirect_to(request, session, f"/runs/{quote(run_id, safe='')}?notice=started")


@router.get("/events")
async def events_page(request: Request) -> Response:
    session, gate = await enter(request)
    if gate is not None:
        return gate
    return await _events_page(request, session, result=None, error=None, kept={})


@router.post("/events")
async def send_event(request: Request) -> Response:
    session, form, gate = await read_post(request)
    if gate is not None:
        return gate
    app = deps(request)[0]
    try:
        result = await app.send_event(
            form_text(form, "name"), form_json(form, "data", {}), id=form_text(form, "id") or None
        )
    except (TarryError, ValueError) as exc:
        kept = {k: form_text(form, k) for k in ("name", "data", "id")}
        return await _events_page(
            request, session, status_of(exc), result=None, error=str(exc), kept=kept
        )
    return await _events_page(request, session, result=result, error=None, kept={})


async def _events_page(
    request: Request, session: Session, status: int = 200, **ctx: Any
) -> Response:
    """The send form with the most recent events received, newest first, each with the
    runs it started and resumed."""
    recent = (await deps(request)[0].list_events(limit=50)).items
    links = await links_of(await store_of(request), recent)
    return render_page(request, session, "events.html", status, recent=recent, links=links, **ctx)


@router.get("/events/{event_id:path}")
async def event_page(request: Request, event_id: str) -> Response:
    """One event: its data, the runs it started and the runs it resumed."""
    session, gate = await enter(request)
    if gate is not None:
        return gate
    store = await store_of(request)
    # An id no event can have (events' ids are checked names) is not looked up at all.
    plausible = 0 < len(event_id) <= 256 and "\x00" not in event_id
    row = await store.get_event(event_id) if plausible else None
    if row is None:
        message = (
            f"There is no event {event_id!r}: the id may be mistyped, or the event is older "
            "than the App's event_retention and was deleted."
        )
        return render_page(request, session, "missing.html", 404, message=message)
    event = Event(row.name, serde.loads(row.data), row.id, to_datetime(row.ts))  # type: ignore[arg-type]
    links = (await links_of(store, [event]))[event.id]
    return render_page(request, session, "event.html", event=event, links=links)
