"""The dashboard: server-rendered pages over the App, for the person in the loop.

GET pages need a session when the server has a token; every POST carries the
session's CSRF token, is checked before anything else, and answers with a 303
redirect (or the page again with the error, status 4xx).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from ..app import App
from ..errors import RunNotFound, TarryError
from ..models import RUN_STATUSES, Run
from .auth import Guard, Session
from .errors import status_for
from .render import render
from .schemas import CURSOR_PATTERN
from .strictjson import loads_strict

router = APIRouter(include_in_schema=False)

NOTICES = {
    "delivered": "Signal delivered: the run resumes now.",
    "message": "Message sent to the run's mailbox.",
    "cancelled": "Run cancelled.",
    "cancel-requested": "Cancel requested: the run stops at its next step.",
    "started": "Run started.",
}


class BadInput(ValueError):
    """A form field the dashboard could not use."""


def _deps(request: Request) -> tuple[App, Guard]:
    return request.app.state.tarry, request.app.state.guard


def _page(
    request: Request, session: Session, template: str, status: int = 200, **ctx: Any
) -> Response:
    _, guard = _deps(request)
    response = render(
        template,
        status,
        csrf=session.csrf,
        auth_on=guard.token is not None,
        path=request.url.path,
        **ctx,
    )
    guard.store(session, request, response)
    return response


def _redirect(request: Request, session: Session, url: str) -> Response:
    response = RedirectResponse(url, status_code=303)
    _deps(request)[1].store(session, request, response)
    return response


def _enter(request: Request) -> tuple[Session, Response | None]:
    """The session, and a redirect to the login page if it may not see the dashboard."""
    guard = _deps(request)[1]
    session = guard.session(request)
    if guard.allowed(session):
        return session, None
    # The path as sent (still percent-encoded), so a run id with "/" or ".." comes back whole.
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else request.url.path
    here = path + (f"?{request.url.query}" if request.url.query else "")
    return session, _redirect(request, session, f"/login?next={quote(here)}")


async def _post(request: Request) -> tuple[Session, FormData, Response | None]:
    guard = _deps(request)[1]
    session = guard.session(request)
    form = await request.form()
    guard.check_csrf(session, form.get("csrf"))
    if not guard.allowed(session):
        return session, form, _redirect(request, session, "/login")
    return session, form, None


def _status(exc: Exception) -> int:
    code = status_for(exc)
    return code if code < 500 else 503


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _json_field(form: FormData, name: str, default: Any) -> Any:
    raw = _text(form, name)
    if not raw:
        return default
    try:
        return loads_strict(raw)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{name} is not valid JSON: {exc}") from None


# -- login ------------------------------------------------------------------------------


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.get("/login")
async def login_page(request: Request, next: str = "/") -> Response:
    guard = _deps(request)[1]
    session = guard.session(request)
    if guard.allowed(session):
        return _redirect(request, session, _safe_next(next))
    return _page(request, session, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    guard = _deps(request)[1]
    session = guard.session(request)
    form = await request.form()
    guard.check_csrf(session, form.get("csrf"))
    target = _safe_next(_text(form, "next") or "/")
    if guard.login(session, _text(form, "token")):
        return _redirect(request, session, target)
    return _page(request, session, "login.html", 401, next=target, error="That token is not valid.")


@router.post("/logout")
async def logout(request: Request) -> Response:
    guard = _deps(request)[1]
    session = guard.session(request)
    form = await request.form()
    guard.check_csrf(session, form.get("csrf"))
    guard.logout(session)
    return _redirect(request, session, "/login")


# -- runs -------------------------------------------------------------------------------


@router.get("/")
async def runs_page(
    request: Request,
    status: str = "",
    workflow: str = "",
    cursor: str = "",
    fragment: str = "",
) -> Response:
    session, gate = _enter(request)
    if gate is not None:
        return gate
    app = _deps(request)[0]
    status = status if status in RUN_STATUSES else ""
    cursor = cursor if re.fullmatch(CURSOR_PATTERN, cursor) else ""
    page = await app.list_runs(
        status=status or None, workflow=workflow or None, cursor=cursor or None, limit=50
    )
    filters = {"status": status, "workflow": workflow}
    more = None
    if page.next_cursor:
        more = "/?" + urlencode({**filters, "cursor": page.next_cursor})
    context: dict[str, Any] = dict(
        runs=page.items,
        filters=filters,
        statuses=RUN_STATUSES,
        workflows=sorted(app.workflows),
        more=more,
        refresh="/?" + urlencode({**filters, "cursor": cursor, "fragment": "table"}),
    )
    template = "runs_table.html" if fragment == "table" else "runs.html"
    return _page(request, session, template, **context)


async def _run_page(
    request: Request,
    session: Session,
    run_id: str,
    *,
    fragment: str = "",
    notice: str = "",
    error: str | None = None,
    status: int = 200,
    shown: str = "",
) -> Response:
    app = _deps(request)[0]
    try:
        # The version is read first: should the run move before it is read, the page
        # shows more than its version says, and the next refresh fetches it again.
        version = await app.run_version(run_id)
        if fragment == "live" and shown and shown == version:
            return Response(status_code=204)  # the page is current: nothing to swap
        run = await app.get_run(run_id)
    except RunNotFound as exc:
        return _page(request, session, "missing.html", 404, message=str(exc))
    template = "run_live.html" if fragment == "live" else "run.html"
    return _page(
        request,
        session,
        template,
        status,
        run=run,
        version=version,
        notice=NOTICES.get(notice),
        error=error,
    )


@router.get("/runs/{run_id:path}")
async def run_page(
    request: Request, run_id: str, fragment: str = "", notice: str = "", shown: str = ""
) -> Response:
    """A run's page. Its live part refreshes itself every 2 s, sending the version it
    shows (``shown``): while the run has not moved, the answer is an empty 204."""
    session, gate = _enter(request)
    if gate is not None:
        return gate
    return await _run_page(request, session, run_id, fragment=fragment, notice=notice, shown=shown)


def _decision(form: FormData) -> Any:
    choice = _text(form, "decision")
    if choice in ("approve", "reject"):
        return {"approved": choice == "approve", "by": _text(form, "by") or "dashboard"}
    if choice == "custom":
        data = _json_field(form, "data", None)
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
        name = _text(form, "name") or waiting.key or "decision"
        await app.send_message(run.id, name, data)
        return "message"
    raise BadInput(f"this run waits on {waiting.kind}; send it from the events page or the API")


@router.post("/runs/{run_id:path}/decide")
async def decide(request: Request, run_id: str) -> Response:
    session, form, gate = await _post(request)
    if gate is not None:
        return gate
    app = _deps(request)[0]
    try:
        run = await app.get_run(run_id)
        notice = await _deliver(app, run, form)
    except (TarryError, ValueError) as exc:
        return await _run_page(request, session, run_id, error=str(exc), status=_status(exc))
    return _redirect(request, session, f"/runs/{quote(run_id, safe='')}?notice={notice}")


@router.post("/runs/{run_id:path}/cancel")
async def cancel(request: Request, run_id: str) -> Response:
    session, form, gate = await _post(request)
    if gate is not None:
        return gate
    app = _deps(request)[0]
    try:
        run = await app.cancel(run_id, _text(form, "reason") or "cancelled from the dashboard")
    except RunNotFound as exc:
        return _page(request, session, "missing.html", 404, message=str(exc))
    notice = "cancelled" if run.status == "cancelled" else "cancel-requested"
    return _redirect(request, session, f"/runs/{quote(run_id, safe='')}?notice={notice}")


# -- workflows and events ---------------------------------------------------------------


@router.get("/workflows")
async def workflows_page(request: Request) -> Response:
    session, gate = _enter(request)
    if gate is not None:
        return gate
    app = _deps(request)[0]
    return _page(request, session, "workflows.html", workflows=list(app.workflows.values()))


@router.post("/workflows/start")
async def start(request: Request) -> Response:
    session, form, gate = await _post(request)
    if gate is not None:
        return gate
    app = _deps(request)[0]
    try:
        run_id = await app.start(
            _text(form, "workflow"),
            _json_field(form, "payload", None),
            run_id=_text(form, "run_id") or None,
        )
    except (TarryError, ValueError) as exc:
        return _page(
            request,
            session,
            "workflows.html",
            _status(exc),
            workflows=list(app.workflows.values()),
            error=str(exc),
        )
    return _redirect(request, session, f"/runs/{quote(run_id, safe='')}?notice=started")


@router.get("/events")
async def events_page(request: Request) -> Response:
    session, gate = _enter(request)
    if gate is not None:
        return gate
    return await _events_page(request, session, result=None, error=None)


@router.post("/events")
async def send_event(request: Request) -> Response:
    session, form, gate = await _post(request)
    if gate is not None:
        return gate
    app = _deps(request)[0]
    try:
        result = await app.send_event(
            _text(form, "name"), _json_field(form, "data", {}), id=_text(form, "id") or None
        )
    except (TarryError, ValueError) as exc:
        return await _events_page(request, session, _status(exc), result=None, error=str(exc))
    return await _events_page(request, session, result=result, error=None)


async def _events_page(
    request: Request, session: Session, status: int = 200, **ctx: Any
) -> Response:
    """The send form with the most recent events received, newest first."""
    recent = (await _deps(request)[0].list_events(limit=50)).items
    return _page(request, session, "events.html", status, recent=recent, **ctx)
