"""What every dashboard route shares: the session gate, CSRF-checked forms, rendering.

GET pages need a session when the server has a token; every POST carries the
session's CSRF token, is checked before anything else, and answers with a 303
redirect (or the page again with the error, status 4xx).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from ..app import App
from ..errors import RunNotFound
from .auth import Guard, Session
from .errors import status_for
from .render import render
from .strictjson import loads_strict

NOTICES = {
    "delivered": "Signal delivered: the run resumes now.",
    "message": "Message sent to the run's mailbox.",
    "cancelled": "Run cancelled.",
    "cancel-requested": "Cancel requested: the run stops at its next step.",
    "started": "Run started.",
    "retried": "Retry requested: the run starts again from the step that stopped it.",
    "forked": "Forked: this new run copies the steps before the chosen one and runs on from it.",
}


class BadInput(ValueError):
    """A form field the dashboard could not use."""


def deps(request: Request) -> tuple[App, Guard]:
    return request.app.state.tarry, request.app.state.guard


def render_page(
    request: Request, session: Session, template: str, status: int = 200, **ctx: Any
) -> Response:
    _, guard = deps(request)
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


def redirect_to(request: Request, session: Session, url: str) -> Response:
    response = RedirectResponse(url, status_code=303)
    deps(request)[1].store(session, request, response)
    return response


def enter(request: Request) -> tuple[Session, Response | None]:
    """The session, and a redirect to the login page if it may not see the dashboard."""
    guard = deps(request)[1]
    session = guard.session(request)
    if guard.allowed(session):
        return session, None
    # The path as sent (still percent-encoded), so a run id with "/" or ".." comes back whole.
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else request.url.path
    here = path + (f"?{request.url.query}" if request.url.query else "")
    return session, redirect_to(request, session, f"/login?next={quote(here)}")


async def read_post(request: Request) -> tuple[Session, FormData, Response | None]:
    guard = deps(request)[1]
    session = guard.session(request)
    form = await request.form()
    guard.check_csrf(session, form.get("csrf"))
    if not guard.allowed(session):
        return session, form, redirect_to(request, session, "/login")
    return session, form, None


def status_of(exc: Exception) -> int:
    code = status_for(exc)
    return code if code < 500 else 503


def form_text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def form_json(form: FormData, name: str, default: Any) -> Any:
    raw = form_text(form, name)
    if not raw:
        return default
    try:
        return loads_strict(raw)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{name} is not valid JSON: {exc}") from None


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
) -> Response:
    app = deps(request)[0]
    try:
        # The version is read first: should the run move before it is read, the page
        # shows more than its version says, and the next refresh fetches it again.
        version = await app.run_version(run_id)
        if fragment == "live" and shown and shown == version:
            return Response(status_code=204)  # the page is current: nothing to swap
        run = await app.get_run(run_id)
    except RunNotFound as exc:
        return render_page(request, session, "missing.html", 404, message=str(exc))
    template = "run_live.html" if fragment == "live" else "run.html"
    return render_page(
        request,
        session,
        template,
        status,
        run=run,
        version=version,
        notice=NOTICES.get(notice),
        error=error,
    )
