"""The dashboard: server-rendered pages over the App, for the person in the loop.

GET pages need a session when the server has a token; every POST carries the
session's CSRF token, is checked before anything else, and answers with a 303
redirect (or the page again with the error, status 4xx).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from ..app import App
from ..errors import RunNotFound, TarryError
from ..models import RUN_STATUSES, Run
from .auth import Session
from .pages import (
    BadInput,
    deps,
    enter,
    form_json,
    form_text,
    read_post,
    redirect_to,
    render_page,
    run_page_response,
    status_of,
)
from .schemas import CURSOR_PATTERN

router = APIRouter(include_in_schema=False)

# -- login ------------------------------------------------------------------------------


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.get("/login")
async def login_page(request: Request, next: str = "/") -> Response:
    guard = deps(request)[1]
    session = guard.session(request)
    if guard.allowed(session):
        return redirect_to(request, session, _safe_next(next))
    return render_page(request, session, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    guard = deps(request)[1]
    session = guard.session(request)
    form = await request.form()
    guard.check_csrf(session, form.get("csrf"))
    target = _safe_next(form_text(form, "next") or "/")
    if guard.login(session, form_text(form, "token")):
        return redirect_to(request, session, target)
    return render_page(
        request, session, "login.html", 401, next=target, error="That token is not valid."
    )


@router.post("/logout")
async def logout(request: Request) -> Response:
    guard = deps(request)[1]
    session = guard.session(request)
    form = await request.form()
    guard.check_csrf(session, form.get("csrf"))
    guard.logout(session)
    return redirect_to(request, session, "/login")


# -- runs -------------------------------------------------------------------------------


@router.get("/")
async def runs_page(
    request: Request,
    status: str = "",
    workflow: str = "",
    cursor: str = "",
    fragment: str = "",
    retried: str = "",
    version: str = "",
) -> Response:
    session, gate = enter(request)
    if gate is not None:
        return gate
    app = deps(request)[0]
    status = status if status in RUN_STATUSES else ""
    cursor = cursor if re.fullmatch(CURSOR_PATTERN, cursor) else ""
    version = version if 0 < len(version) <= 256 and "\x00" not in version else ""
    page = await app.list_runs(
        status=status or None,
        workflow=workflow or None,
        cursor=cursor or None,
        limit=50,
        version=version or None,
    )
    filters = {"status": status, "workflow": workflow, "version": version}
    more = None
    if page.next_cursor:
        more = "/?" + urlencode({**filters, "cursor": page.next_cursor})
    context: dict[str, Any] = dict(
        runs=page.items,
        retry_all=await _retry_all_count(app, status, workflow),
        retried=int(retried) if retried.isdigit() and len(retried) < 10 else None,
        filters=filters,
        statuses=RUN_STATUSES,
        workflows=sorted(app.workflows),
        more=more,
        refresh="/?" + urlencode({**filters, "cursor": cursor, "fragment": "table"}),
    )
    template = "runs_table.html" if fragment == "table" else "runs.html"
    return render_page(request, session, template, **context)


async def _retry_all_count(app: App, status: str, workflow: str) -> int:
    """For the runs list filtered on failed runs: how many "Retry all" would retry
    (a dry run), or 0 to offer no such button."""
    if status != "failed":
        return 0
    try:
        return (await app.retry_runs(workflow=workflow or None, dry_run=True)).matched
    except ValueError:  # a workflow filter no workflow could have
        return 0


@router.get("/runs/{run_id:path}")
async def run_page(
    request: Request, run_id: str, fragment: str = "", notice: str = "", shown: str = ""
) -> Response:
    """A run's page. Its live part refreshes itself every 2 s, sending the version it
    shows (``shown``): while the run has not moved, the answer is an empty 204."""
    session, gate = enter(request)
    if gate is not None:
        return gate
    return await run_page_response(
        request, session, run_id, fragment=fragment, notice=notice, shown=shown
    )


def _decision(form: FormData) -> Any:
    choice = form_text(form, "decision")
    if choice in ("approve", "reject"):
        return {"approved": choice == "approve", "by": form_text(form, "by") or "dashboard"}
    if choice == "custom":
        data = form_json(form, "data", None)
        if data is None:
            raise BadInput("the custom payload must be a JSON value other than null")
        return data
    raise BadInput(f"unknown decision {choice!r}")


async def _deliver(app: App, run: Run, form: FormData) -> str:
    """Send what ``run`` waits for; the notice code for the redirect."""
    waiting = run.waiting_for
    if run.status != "waiting" or waiting is None:
        raise BadInput(f"run {run.id} is {run.status} and waits for nothing")
    data = _decision(form)
    if waiting.kind == "signal" and waiting.key:
        # strict: a stale page must not buffer a decision for some later run.
        await app.send_signal(waiting.key, data, strict=True)
        return "delivered"
    if waiting.kind == "message":
        name = form_text(form, "name") or waiting.key or "decision"
        await app.send_message(run.id, name, data)
        return "message"
    raise BadInput(f"this run waits on {waiting.kind}; send it from the events page or the API")


@router.post("/runs/{run_id:path}/decide")
async def decide(request: Request, run_id: str) -> Response:
    session, form, gate = await read_post(request)
    if gate is not None:
        return gate
    app = deps(request)[0]
    try:
        run = await app.get_run(run_id)
        notice = await _deliver(app, run, form)
    except (TarryError, ValueError) as exc:
        return await run_page_response(
            request, session, run_id, error=str(exc), status=status_of(exc)
        )
    return redirect_to(request, session, f"/runs/{quote(run_id, safe='')}?notice={notice}")


@router.post("/runs/{run_id:path}/cancel")
async def cancel(request: Request, run_id: str) -> Response:
    session, form, gate = await read_post(request)
    if gate is not None:
        return gate
    app = deps(request)[0]
    try:
        run = await app.cancel(run_id, form_text(form, "reason") or "cancelled from the dashboard")
    except RunNotFound as exc:
        return render_page(request, session, "missing.html", 404, message=str(exc))
    notice = "cancelled" if run.status == "cancelled" else "cancel-requested"
    return redirect_to(request, session, f"/runs/{quote(run_id, safe='')}?notice={notice}")


# -- workflows and events ---------------------------------------------------------------


@router.get("/workflows")
async def workflows_page(request: Request) -> Response:
    session, gate = enter(request)
    if gate is not None:
        return gate
    app = deps(request)[0]
    return render_page(request, session, "workflows.html", workflows=list(app.workflows.values()))


@router.post("/workflows/start")
async def start(request: Request) -> Response:
    session, form, gate = await read_post(request)
    if gate is not None:
        return gate
    app = deps(request)[0]
    try:
        run_id = await app.start(
            form_text(form, "workflow"),
            form_json(form, "payload", None),
            run_id=form_text(form, "run_id") or None,
        )
    except (TarryError, ValueError) as exc:
        return render_page(
            request,
            session,
            "workflows.html",
            status_of(exc),
            workflows=list(app.workflows.values()),
            error=str(exc),
        )
    return redirect_to(request, session, f"/runs/{quote(run_id, safe='')}?notice=started")


@router.get("/events")
async def events_page(request: Request) -> Response:
    session, gate = enter(request)
    if gate is not None:
        return gate
    return await _events_page(request, session, result=None, error=None)


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
        return await _events_page(request, session, status_of(exc), result=None, error=str(exc))
    return await _events_page(request, session, result=result, error=None)


async def _events_page(
    request: Request, session: Session, status: int = 200, **ctx: Any
) -> Response:
    """The send form with the most recent events received, newest first."""
    recent = (await deps(request)[0].list_events(limit=50)).items
    return render_page(request, session, "events.html", status, recent=recent, **ctx)
