"""The JSON API under ``/api/v1``: thin routes over the App's client methods."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials

from ..app import App
from .auth import Guard, bearer
from .bodies import CURSOR_PATTERN, CancelBody, EventBody, MessageBody, SignalBody, StartBody
from .limits import StrictJSONRoute
from .responses import (
    ErrorOut,
    EventOut,
    MessageOut,
    RunOut,
    RunPageOut,
    RunStatusName,
    SignalOut,
    StartOut,
    WorkflowOut,
    run_out,
    workflow_out,
)


def tarry_app(request: Request) -> App:
    app: App = request.app.state.tarry
    return app


def authorized(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> None:
    guard: Guard = request.app.state.guard
    guard.check_bearer(credentials)


# The query parameters each route takes; any other is refused (422), as unknown body
# fields are, so a typo such as ``?stauts=waiting`` does not silently list every run.
QUERY_PARAMETERS: dict[str, frozenset[str]] = {
    "list_runs": frozenset({"status", "workflow", "limit", "cursor", "version"}),
}


def known_query(request: Request) -> None:
    route = request.scope.get("route")
    allowed = QUERY_PARAMETERS.get(getattr(route, "name", ""), frozenset())
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "msg": "unknown query parameter",
                    "input": request.query_params.get(name),
                }
                for name in unknown
            ]
        )


TarryApp = Annotated[App, Depends(tarry_app)]

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorOut, "description": what}
    for status, what in (
        (400, "bad input, or a body that is not JSON"),
        (401, "missing or wrong bearer token"),
        (413, "body over the size limit"),
        (415, "body not sent as application/json"),
        (422, "a field is missing or has the wrong type"),
    )
}


def responses_with(*pairs: tuple[int, str]) -> dict[int | str, dict[str, object]]:
    return {**ERROR_RESPONSES, **{s: {"model": ErrorOut, "description": d} for s, d in pairs}}


# A signal or message sent to a typed wait (schema=) whose data does not fit: 422 with
# each violation, the run still parked and nothing stored.
INVALID_RESPONSE: dict[int | str, dict[str, object]] = {
    422: {
        "model": ErrorOut,
        "description": "a field is missing or has the wrong type; or the data does not fit "
        "the JSON Schema of the wait it was sent to (type PayloadInvalid, with errors: "
        "[{path, message}]), and nothing was stored",
    }
}

router = APIRouter(
    prefix="/api/v1",
    dependencies=[Depends(authorized), Depends(known_query)],
    responses=ERROR_RESPONSES,
    route_class=StrictJSONRoute,
)


@router.post(
    "/runs",
    status_code=201,
    response_model=StartOut,
    responses=responses_with((404, "unknown workflow")),
    summary="Start a run",
)
async def start_run(body: StartBody, app: TarryApp) -> StartOut:
    run_id = await app.start(
        body.workflow, body.payload, run_id=body.run_id, delay=body.delay, start_at=body.start_at
    )
    return StartOut(run_id=run_id)


@router.get("/runs", response_model=RunPageOut, summary="List runs, newest first")
async def list_runs(
    app: TarryApp,
    status: RunStatusName | None = None,
    workflow: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="the next_cursor of the previous page"),
    ] = None,
    version: Annotated[
        str | None,
        Query(min_length=1, max_length=256, description="only runs started on this code version"),
    ] = None,
) -> RunPageOut:
    page = await app.list_runs(
        status=status, workflow=workflow, limit=limit, cursor=cursor, version=version
    )
    return RunPageOut(
        items=[run_out(r, with_steps=False, now=app.clock.now()) for r in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/runs/{run_id:path}",
    response_model=RunOut,
    responses=responses_with((404, "no such run")),
    summary="A run with its steps and what it waits for",
)
async def get_run(run_id: str, app: TarryApp) -> RunOut:
    return run_out(await app.get_run(run_id), with_steps=True, now=app.clock.now())


@router.post(
    "/runs/{run_id:path}/cancel",
    response_model=RunOut,
    responses=responses_with((404, "no such run")),
    summary="Cancel a run and the runs it invoked (a no-op on an ended run)",
)
async def cancel_run(
    run_id: str, app: TarryApp, body: Annotated[CancelBody | None, Body()] = None
) -> RunOut:
    body = body or CancelBody()
    run = await app.cancel(run_id, body.reason, children=body.children)
    return run_out(run, with_steps=True, now=app.clock.now())


@router.post(
    "/runs/{run_id:path}/messages",
    status_code=202,
    response_model=MessageOut,
    responses={
        **responses_with((404, "no such run"), (409, "the run has ended")),
        **INVALID_RESPONSE,
    },
    summary="Append a message to a run's mailbox",
)
async def send_message(run_id: str, body: MessageBody, app: TarryApp) -> MessageOut:
    await app.send_message(run_id, body.name, body.data)
    return MessageOut(run_id=run_id, name=body.name)


@router.post(
    "/signals",
    response_model=SignalOut,
    responses={**responses_with((404, "strict and no run waits on the key")), **INVALID_RESPONSE},
    summary="Send a signal to the run waiting on a key (buffered if none, unless strict)",
)
async def send_signal(body: SignalBody, app: TarryApp) -> SignalOut:
    result = await app.send_signal(body.signal, body.data, strict=body.strict)
    return SignalOut(status=result.status, run_id=result.run_id)


@router.post("/events", response_model=EventOut, summary="Send an event")
async def send_event(body: EventBody, app: TarryApp) -> EventOut:
    result = await app.send_event(body.name, body.data, id=body.id)
    return EventOut(event_ids=result.event_ids, started=result.started, resumed=result.resumed)


@router.get("/workflows", response_model=list[WorkflowOut], summary="Registered workflows")
async def list_workflows(app: TarryApp) -> list[WorkflowOut]:
    return [workflow_out(w) for w in app.workflows.values()]
