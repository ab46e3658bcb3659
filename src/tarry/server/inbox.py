"""The approvals inbox: every wait on a person, soonest deadline first, each with the
form that answers it, so a person approves from the list without opening the run.

A wait on a person is a typed one: a signal, message or callback token wait that
declared ``schema=`` (``tarry.Approval`` among them). The store reads them from an
index of typed waiters only (``Store.inbox``), so ended runs and machine waits cost
nothing; the navigation's count is one count of that index. Like the runs list the
page refreshes itself, and like a run's page it asks with the version it shows: an
unchanged inbox answers 204, so a form being filled in is left alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from ..store.dashboard_records import PersonWait
from .answers import Answerable, AnswerState, one_of_any
from .auth import Session
from .pages import NOTICES, deps, enter, render_page, store_of
from .render import span

router = APIRouter(include_in_schema=False)

LIMIT = 500
"""At most this many waits are listed (the soonest deadlines); the count says how
many there are in all."""
STALE = 60
"""Seconds after which an unchanged inbox is drawn again, for its "waiting for"."""


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One waiting step of a run: what it waits for (its conditions, in people's
    words), since when, until when, and the forms that answer it."""

    run_id: str
    workflow: str
    step: str
    what: str
    waited: str
    expires_at: datetime | None
    answers: list[Answerable]


def inbox_items(waits: list[PersonWait], now: float) -> list[InboxItem]:
    """The store's typed conditions grouped by waiting step, in the store's order
    (soonest deadline first). A wait on any of several conditions gets one form."""
    steps: dict[tuple[str, str], list[PersonWait]] = {}
    for wait in waits:
        steps.setdefault((wait.run_id, wait.step), []).append(wait)
    items = []
    for (run_id, step), conditions in steps.items():
        first = conditions[0]
        expires = _time(first.expires_at)
        answers = [
            Answerable(run_id, step, c.index, c.kind, c.key, c.name, orjson.loads(c.schema))
            for c in conditions
        ]
        joiner = " or " if first.step_kind == "any" else " and "
        what = joiner.join(f"{c.kind} {c.name or '(any name)'}" for c in conditions)
        waited = span(now - first.since) if first.since is not None else ""
        items.append(
            InboxItem(
                run_id, first.workflow, step, what, waited, expires,
                one_of_any(first.step_kind, answers),
            )
        )  # fmt: skip
    return items


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _version(waits: list[PersonWait], total: int, now: float) -> str:
    shown = [(w.run_id, w.step, w.index, w.expires_at) for w in waits]
    text = orjson.dumps([shown, total, int(now // STALE)])
    return hashlib.sha256(text).hexdigest()[:16]


@router.get("/inbox")
async def inbox_page(
    request: Request, fragment: str = "", notice: str = "", shown: str = ""
) -> Response:
    """The inbox; ``fragment=list`` its list (204 while unchanged since ``shown``),
    ``fragment=count`` the navigation's count alone (empty when there is nothing, or
    no dashboard session to show it to)."""
    session, gate = await enter(request)
    if fragment == "count":
        if gate is not None:
            return Response("", media_type="text/plain")
        count = await (await store_of(request)).inbox_count()
        return Response(str(count) if count else "", media_type="text/plain")
    if gate is not None:
        return gate
    return await inbox_response(request, session, fragment=fragment, notice=notice, shown=shown)


async def inbox_response(
    request: Request,
    session: Session,
    *,
    fragment: str = "",
    notice: str = "",
    shown: str = "",
    error: str | None = None,
    status: int = 200,
    answer: AnswerState | None = None,
) -> Response:
    now = deps(request)[0].clock.now()
    found = await (await store_of(request)).inbox(LIMIT)
    version = _version(found.waits, found.total, now)
    if fragment == "list" and shown and shown == version:
        return Response(status_code=204)  # the list is current: nothing to swap
    items = inbox_items(found.waits, now)
    return render_page(
        request,
        session,
        "inbox_list.html" if fragment == "list" else "inbox.html",
        status,
        items=items,
        total=found.total,
        version=version,
        notice=NOTICES.get(notice),
        error=error,
        answer_state=answer,
    )
