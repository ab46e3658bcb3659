"""What every dashboard route shares: the session gate, CSRF-checked forms, rendering.

GET pages need a session when the server has a token; every POST carries the
session's CSRF token, is checked before anything else, and answers with a 303
redirect (or the page again with the error, status 4xx). A POST whose token this
session does not know gets the resubmit page, which keeps what it held.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from ..app import App
from ..store.base import Store
from .auth import Guard, Session
from .errors import status_for
from .render import render
from .strictjson import loads_strict

NOTICES = {
    "delivered": "Signal delivered: the run resumes now.",
    "message": "Message sent to the run's mailbox.",
    "answered": "Answer recorded: the run resumes now.",
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


async def store_of(request: Request) -> Store:
    """The App's store, opened: for the reads only the dashboard makes."""
    return await deps(request)[0]._open()


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


async def enter(request: Request) -> tuple[Session, Response | None]:
    """The session, and a redirect to the login page if it may not see the dashboard."""
    app, guard = deps(request)
    await guard.ready(app)
    session = guard.session(request)
    if guard.allowed(session):
        return session, None
    return session, redirect_to(request, session, f"/login?next={quote(raw_target(request))}")


def raw_target(request: Request) -> str:
    """The path and query as sent (still percent-encoded), so a run id with "/" or
    ".." comes back whole."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else request.url.path
    return path + (f"?{request.url.query}" if request.url.query else "")


async def read_post(request: Request) -> tuple[Session, FormData, Response | None]:
    """The session and the form of a POST, and the page to answer instead when its
    CSRF token is stale (the resubmit page, which keeps what was sent) or the
    session may not use the dashboard. A resubmit page with a token field logs in."""
    app, guard = deps(request)
    await guard.ready(app)
    session = guard.session(request)
    form = await request.form()
    if not guard.csrf_ok(session, form.get("csrf")):
        return session, form, resubmit_page(request, session, form)
    if not guard.allowed(session):
        given = form_text(form, "token")
        if not given:
            return session, form, redirect_to(request, session, "/login")
        if not guard.login(session, given):
            error = "That token is not valid: nothing was sent."
            return session, form, resubmit_page(request, session, form, error=error)
    return session, form, None


KEPT_OUT = frozenset({"csrf", "token"})
"""Fields a resubmit page never carries: the stale CSRF token and a secret."""


def resubmit_page(
    request: Request, session: Session, form: FormData, error: str | None = None
) -> Response:
    """A form whose CSRF token this session does not know (the session expired, the
    cookie was cleared or signed with another key): the same form again, with what
    it held and a fresh token, for the person to send again, or not."""
    kept = [(k, v) for k, v in form.multi_items() if k not in KEPT_OUT and isinstance(v, str)]
    guard = deps(request)[1]
    action = raw_target(request)
    back = action.split("?", 1)[0].rsplit("/", 1)[0]  # /runs/ID/decide: the run's page
    return render_page(
        request,
        session,
        "resubmit.html",
        403,
        action=action,
        back=back if back not in ("", "/runs") else "/",
        kept=kept,
        needs_token=not guard.allowed(session),
        error=error,
    )


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


def missing_run(request: Request, session: Session, run_id: str) -> Response:
    """The 404 page for a run id: it names the id, never the database."""
    message = f"There is no run {run_id!r}: the id may be mistyped, or the run was purged."
    return render_page(request, session, "missing.html", 404, message=message)
