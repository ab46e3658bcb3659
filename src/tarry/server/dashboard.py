"""The dashboard: server-rendered pages over the App, for the person in the loop.

GET pages need a session when the server has a token; every POST carries the
session's CSRF token, is checked before anything else, and answers with a 303
redirect (or the page again with the error and what the form held, status 4xx).
A POST whose token is stale gets the resubmit page (``pages.read_post``).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..errors import RunNotFound
from . import answer_routes, dashboard_events, inbox, runs_list
from .pages import (
    deps,
    enter,
    form_text,
    missing_run,
    read_post,
    redirect_to,
    render_page,
    resubmit_page,
)
from .run_page import run_page_response

router = APIRouter(include_in_schema=False)
router.include_router(runs_list.router)
router.include_router(dashboard_events.router)
router.include_router(inbox.router)
router.include_router(answer_routes.router)  # answering a wait: run page, inbox, token page

# -- login ------------------------------------------------------------------------------


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.get("/login")
async def login_page(request: Request, next: str = "/") -> Response:
    session, gate = await enter(request)
    if gate is None:
        return redirect_to(request, session, _safe_next(next))
    return render_page(request, session, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    app, guard = deps(request)
    await guard.ready(app)
    session = guard.session(request)
    form = await request.form()
    target = _safe_next(form_text(form, "next") or "/")
    if not guard.csrf_ok(session, form.get("csrf")):
        message = (
            "This login form had expired (or the server restarted with a new key): log in again."
        )
        return render_page(request, session, "login.html", 403, next=target, error=message)
    if guard.login(session, form_text(form, "token")):
        return redirect_to(request, session, target)
    return render_page(
        request, session, "login.html", 401, next=target, error="That token is not valid."
    )


@router.post("/logout")
async def logout(request: Request) -> Response:
    app, guard = deps(request)
    await guard.ready(app)
    session = guard.session(request)
    form = await request.form()
    if not guard.csrf_ok(session, form.get("csrf")):  # a page elsewhere must not log you out
        return resubmit_page(request, session, form)
    guard.logout(session)
    return redirect_to(request, session, "/login")


# -- a run ------------------------------------------------------------------------------


@router.get("/runs/{run_id:path}")
async def run_page(
    request: Request, run_id: str, fragment: str = "", notice: str = "", shown: str = ""
) -> Response:
    """A run's page. Its live part refreshes itself every 2 s, sending the version it
    shows (``shown``): while the run has not moved, the answer is an empty 204."""
    session, gate = await enter(request)
    if gate is not None:
        return gate
    return await run_page_response(
        request, session, run_id, fragment=fragment, notice=notice, shown=shown
    )


@router.post("/runs/{run_id:path}/cancel")
async def cancel(request: Request, run_id: str) -> Response:
    session, form, gate = await read_post(request)
    if gate is not None:
        return gate
    app = deps(request)[0]
    reason = form_text(form, "reason") or "cancelled from the dashboard"
    try:
        run = await app.cancel(run_id, reason[:1000])
    except RunNotFound:
        return missing_run(request, session, run_id)
    notice = "cancelled" if run.status == "cancelled" else "cancel-requested"
    return redirect_to(request, session, f"/runs/{quote(run_id, safe='')}?notice={notice}")
