"""The runs list: a search by id prefix, workflow prefix, status, code version and
creation time, with how many runs of each status match, refreshing itself.

A filter that cannot be used (a status that does not exist, a time that is not
one) answers 400 with the form as typed and what to type instead.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..app import App
from ..models import RUN_STATUSES, Run
from ..queued_reason import why_queued
from ..records import to_run, with_queues
from ..waiting import on_several
from .pages import deps, enter, render_page, store_of
from .runs_search import BadSearch, parse_query, typed_of

router = APIRouter(include_in_schema=False)
PAGE = 50


TEMPLATES = {"table": "runs_table.html", "counts": "runs_counts.html"}
"""The parts that refresh themselves: the table every 2 s, the counts (a scan of
every run matching the search) every 10 s."""


@router.get("/")
async def runs_page(
    request: Request, cursor: str = "", fragment: str = "", retried: str = ""
) -> Response:
    session, gate = await enter(request)
    if gate is not None:
        return gate
    app = deps(request)[0]
    typed = typed_of(request.query_params)
    template = TEMPLATES.get(fragment, "runs.html")
    context: dict[str, Any] = dict(
        filters=typed,
        statuses=RUN_STATUSES,
        workflows=sorted(app.workflows),
        retried=int(retried) if retried.isdigit() and len(retried) < 10 else None,
    )
    try:
        query = parse_query(typed, cursor, app.clock.now())
    except BadSearch as exc:
        context.update(runs=[], queued={}, counts=None, retry_all=0, more=None, refresh=None)
        return render_page(request, session, template, 400, error=str(exc), **context)
    store = await store_of(request)
    found = await store.search_runs(
        query.search,
        limit=0 if fragment == "counts" else PAGE,
        cursor=query.cursor,
        counts=fragment != "table",
    )
    runs = await _with_arrivals(app, [to_run(row, []) for row in found.runs])
    runs = await with_queues(store, runs)  # what holds the queued ones back, in one read
    more = None
    if len(found.runs) == PAGE:
        more = query.url(cursor=str(found.runs[-1].seq))
    now = app.clock.now()
    context.update(
        runs=runs,
        queued={r.id: why_queued(r, now) for r in runs if r.status == "queued"},
        counts=found.counts,
        total=sum(found.counts.values()),
        retry_all=await _retry_all_count(app, typed) if fragment != "counts" else 0,
        more=more,
        refresh=query.url(cursor=cursor, fragment="table"),
        refresh_counts=query.url(fragment="counts"),
        error=None,
        search_url=query.url,
    )
    return render_page(request, session, template, **context)


async def _with_arrivals(app: App, runs: list[Run]) -> list[Run]:
    """What arrived for a wait on several conditions is kept with its step: read those
    runs' steps so that the list can say "1 of 2 arrived"."""
    several = [r.id for r in runs if r.waiting_for and on_several(r.waiting_for)]
    if not several:
        return runs
    store = await app._open()
    full = {row.id: to_run(row, steps) for row, steps in await store.get_runs(several)}
    return [replace(r, waiting_for=full[r.id].waiting_for) if r.id in full else r for r in runs]


async def _retry_all_count(app: App, typed: dict[str, str]) -> int:
    """For a list of failed runs of one workflow (or all), narrowed by nothing else:
    how many "Retry all" would retry (a dry run), or 0 to offer no such button."""
    if typed["status"] != "failed" or any(typed[k] for k in ("q", "since", "until", "version")):
        return 0
    workflow = typed["workflow"]
    if workflow and workflow not in app.workflows:
        return 0  # a prefix: the button would retry another set than the one shown
    try:
        return (await app.retry_runs(workflow=workflow or None, dry_run=True)).matched
    except ValueError:
        return 0
