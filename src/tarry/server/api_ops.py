"""The API's operations on ended runs under ``/api/v1``: retry, fork, and the bulk forms.

A bulk call names its runs by a filter (workflow, status, creation time) and
may only count them (``dry_run``); a call with no filter at all is refused
unless it says ``"all": true``, so an empty body cannot touch every run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends

from ..names import check_name
from ..operations import BulkResult
from .api import ERROR_RESPONSES, TarryApp, authorized, known_query, responses_with
from .bodies import (
    BulkBody,
    BulkCancelBody,
    BulkForkBody,
    BulkRetryBody,
    ForkBody,
    RetryBody,
    parse_when,
)
from .limits import StrictJSONRoute
from .responses import BulkOut, RunOut, StartOut, run_out


class FilterRequired(ValueError):
    """A bulk operation was given no filter and not ``all``."""


router = APIRouter(
    prefix="/api/v1",
    dependencies=[Depends(authorized), Depends(known_query)],
    responses=ERROR_RESPONSES,
    route_class=StrictJSONRoute,
)

_NO_RUN = (404, "no such run")
_BULK_400 = (400, "no filter and not all, or a filter the App refuses")


@router.post(
    "/runs/retry",
    response_model=BulkOut,
    responses=responses_with(_BULK_400),
    summary="Retry every run matching a filter (failed runs unless status says otherwise)",
)
async def retry_runs(body: BulkRetryBody, app: TarryApp) -> BulkOut:
    since, until = _filter(body)
    result = await app.retry_runs(
        workflow=body.workflow,
        status=body.status or "failed",
        since=since,
        until=until,
        dry_run=body.dry_run,
        by=body.by,
    )
    return _bulk_out(result)


@router.post(
    "/runs/cancel",
    response_model=BulkOut,
    responses=responses_with(_BULK_400),
    summary="Cancel every run matching a filter that has not ended",
)
async def cancel_runs(body: BulkCancelBody, app: TarryApp) -> BulkOut:
    since, until = _filter(body)
    result = await app.cancel_runs(
        body.reason,
        workflow=body.workflow,
        status=body.status,
        since=since,
        until=until,
        dry_run=body.dry_run,
    )
    return _bulk_out(result)


@router.post(
    "/runs/fork",
    response_model=BulkOut,
    responses=responses_with(_BULK_400),
    summary="Fork every ended run matching a filter from a step; done lists the new runs",
)
async def fork_runs(body: BulkForkBody, app: TarryApp) -> BulkOut:
    since, until = _filter(body)
    check_name(body.from_step, "step key")  # before any run: even when none matches
    result = await app.fork_runs(
        body.from_step,
        workflow=body.workflow,
        status=body.status,
        since=since,
        until=until,
        dry_run=body.dry_run,
        by=body.by,
    )
    return _bulk_out(result)


@router.post(
    "/runs/{run_id:path}/retry",
    response_model=RunOut,
    responses=responses_with(_NO_RUN, (409, "the run has not failed and was not cancelled")),
    summary="Retry a failed or cancelled run in place, from the step that stopped it",
)
async def retry_run(
    run_id: str, app: TarryApp, body: Annotated[RetryBody | None, Body()] = None
) -> RunOut:
    run = await app.retry(run_id, by=body.by if body else None)
    return run_out(run, with_steps=True, now=app.clock.now())


@router.post(
    "/runs/{run_id:path}/fork",
    status_code=201,
    response_model=StartOut,
    responses=responses_with(
        (400, "the run recorded no such step (the message lists its steps)"),
        _NO_RUN,
        (409, "the run has not ended"),
    ),
    summary="Start a new run from an ended run's step: the steps before it are copied",
)
async def fork_run(run_id: str, body: ForkBody, app: TarryApp) -> StartOut:
    new = await app.fork(run_id, body.from_step, body.payload, new_run_id=body.run_id, by=body.by)
    return StartOut(run_id=new)


def _filter(body: BulkBody) -> tuple[datetime | str | None, datetime | str | None]:
    if not body.all and not body.has_filter():
        raise FilterRequired(
            'give at least one filter (workflow, status, since, until), or "all": true '
            "to apply to every run"
        )
    since = None if body.since is None else parse_when(body.since)
    until = None if body.until is None else parse_when(body.until)
    return since, until


def _bulk_out(result: BulkResult) -> BulkOut:
    return BulkOut(
        matched=result.matched, done=result.done, skipped=result.skipped, dry_run=result.dry_run
    )
