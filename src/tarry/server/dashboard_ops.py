"""The dashboard's operations on ended runs: Retry, Rerun from here, Retry all.

Each is a form with the session's CSRF token, like Approve and Cancel, and
answers with a 303 to the page that shows the outcome, or the run's page again
with the error (409 for a run in the wrong state).
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..errors import RunNotFound, TarryError
from .pages import (
    deps,
    form_text,
    missing_run,
    read_post,
    redirect_to,
    render_page,
    status_of,
)
from .run_page import run_page_response

router = APIRouter(include_in_schema=False)

BY = "dashboard"
"""Who the run's changes name when the form gives no name."""


@router.post("/runs/retry")
async def retry_all(request: Request) -> Response:
    """Retry every failed run (of one workflow, if the form names one)."""
    session, form, gate = await read_post(request)
    if gate is not None:
        return gate
    app = deps(request)[0]
    workflow = form_text(form, "workflow")
    try:
        result = await app.retry_runs(workflow=workflow or None, status="failed", by=BY)
    except (TarryError, ValueError) as exc:
        return render_page(
            request, session, "missing.html", status_of(exc), title="Not retried", message=str(exc)
        )
    query = {"workflow": workflow, "retried": str(len(result.done))}
    return redirect_to(request, session, "/?" + urlencode(query))


@router.post("/runs/{run_id:path}/retry")
async def retry(request: Request, run_id: str) -> Response:
    session, form, gate = await read_post(request)
    if gate is not None:
        return gate
    app = deps(request)[0]
    try:
        await app.retry(run_id, by=form_text(form, "by") or BY)
    except RunNotFound:
        return missing_run(request, session, run_id)
    except (TarryError, ValueError) as exc:
        return await run_page_response(
            request, session, run_id, error=str(exc), status=status_of(exc), form=form
        )
    return redirect_to(request, session, f"/runs/{quote(run_id, safe='')}?notice=retried")


@router.post("/runs/{run_id:path}/fork")
async def fork(request: Request, run_id: str) -> Response:
    """Rerun from here: a new run from the chosen step, whose page comes next."""
    session, form, gate = await read_post(request)
    if gate is not None:
        return gate
    app = deps(request)[0]
    try:
        new = await app.fork(run_id, form_text(form, "from_step"), by=form_text(form, "by") or BY)
    except RunNotFound:
        return missing_run(request, session, run_id)
    except (TarryError, ValueError) as exc:
        return await run_page_response(
            request, session, run_id, error=str(exc), status=status_of(exc), form=form
        )
    return redirect_to(request, session, f"/runs/{quote(new, safe='')}?notice=forked")
