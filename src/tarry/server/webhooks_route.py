"""``POST /api/v1/webhooks/{name}``: signed deliveries from Stripe, GitHub, Slack, ...

No bearer token here: a provider cannot send one, and the signature that
``app.webhook(name, verify=...)`` checks authenticates the delivery instead. So
the route tells an unsigned caller no more than it must: an unknown name is a
404 that lists no names, a rejection says which header or check failed and
nothing of the expected signature.

A source's ``max_body`` (1 MiB unless told) is enforced by
:class:`WebhookBodyLimit`, outside the server-wide limit, so a delivery over it
is refused after reading at most one chunk past the limit.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import webhooks
from ..app import App
from ..verify import SignatureRejected
from .api import responses_with
from .errors import error_response
from .limits import BodyLimit

PREFIX = "/api/v1/webhooks/"

_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (SignatureRejected, 401),
    (webhooks.WebhookNotFound, 404),
    (webhooks.BodyTooLarge, 413),
    (webhooks.UnsupportedBody, 415),
    (webhooks.UnreadableBody, 400),
    (webhooks.EventNameError, 422),
)
_REJECTIONS = tuple(kind for kind, _ in _STATUS)


class WebhookOut(BaseModel):
    event_id: str
    event: str
    duplicate: bool
    """A retry of a delivery already received: nothing new was stored."""
    started: list[str]
    resumed: list[str]


class ChallengeOut(BaseModel):
    challenge: str


router = APIRouter(prefix="/api/v1")


@router.post(
    "/webhooks/{name}",
    response_model=WebhookOut | ChallengeOut,
    responses=responses_with(
        (401, "missing header, signature mismatch, or timestamp outside the window"),
        (404, "no webhook of that name"),
        (413, "body over the webhook's max_body"),
        (415, "body neither JSON nor form-encoded"),
        (422, "the event name template cannot be filled from the body"),
    ),
    summary="Receive a signed webhook delivery (no bearer token: its signature is checked)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {}},
                "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
            },
        }
    },
)
async def receive_webhook(name: str, request: Request) -> Response | WebhookOut | ChallengeOut:
    app: App = request.app.state.tarry
    try:
        outcome = await webhooks.receive(app, name, await request.body(), request.headers)
    except _REJECTIONS as exc:
        status = next(code for kind, code in _STATUS if isinstance(exc, kind))
        return error_response(status, type(exc).__name__, str(exc))
    if isinstance(outcome, webhooks.Handshake):
        return JSONResponse(outcome.answer)  # exactly what the provider asked for
    return WebhookOut(
        event_id=outcome.event_id,
        event=outcome.event,
        duplicate=outcome.duplicate,
        started=outcome.started,
        resumed=outcome.resumed,
    )


class WebhookBodyLimit:
    """The body limit of the webhook a request is for; other requests pass through."""

    def __init__(self, app: ASGIApp, tarry: App) -> None:
        self.app = app
        self.tarry = tarry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        hook = self.tarry.webhooks.get(path[len(PREFIX) :])
        limit = webhooks.DEFAULT_MAX_BODY if hook is None else hook.max_body
        await BodyLimit(self.app, max_body=limit)(scope, receive, send)


def install(server: FastAPI, app: App) -> None:
    """Serve ``app``'s webhooks; called after the server-wide ``BodyLimit`` is added, so
    that a webhook's own limit applies first."""
    server.include_router(router)
    server.add_middleware(WebhookBodyLimit, tarry=app)
