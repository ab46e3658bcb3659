"""``/api/v1/tokens/{id}?sig=...``: a callback token's link, for systems and people.

No bearer token here: the link's signature is the credential (``tarry.tokens``),
so a link can go in an e-mail or another system's webhook settings. ``POST`` with
a JSON body completes the token with that body; a tampered or cut signature is a
401 with nothing delivered. ``GET`` never changes anything (mail scanners follow
links): it renders a confirmation page whose form posts back to the same URL.
That form is protected as the dashboard's forms are, with the session's CSRF
token, though it needs no login; the signature decides who may answer.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, Response

from ..app import App
from ..errors import (
    PayloadInvalid,
    TarryError,
    TokenAlreadyUsed,
    TokenGone,
    TokenNotFound,
    TokenSignatureInvalid,
)
from ..models import TokenInfo
from ..wait_schema import is_approval
from .api import responses_with
from .auth import Guard, Session
from .errors import error_response
from .pages import form_text, status_of
from .render import pretty, render
from .strictjson import loads_strict

SIG = Annotated[
    str,
    Query(
        max_length=128,
        description="the link's signature, as step.create_token made it (Token.url)",
    ),
]

_HEADERS = {
    "Referrer-Policy": "no-referrer",  # the link is a credential: keep it out of Referer
    "Cache-Control": "no-store",
}


class TokenOut(BaseModel):
    token_id: str
    run_id: str = Field(description="the run the token belongs to, which now resumes")
    status: Literal["completed"] = Field(
        default="completed", description="always completed: a refusal is an error"
    )


router = APIRouter(prefix="/api/v1")


def _with_pages(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """The POST's answers: JSON for a JSON body, the page again for its form."""
    page = {"content": {"text/html": {"schema": {"type": "string"}}}}
    shown: dict[int | str, dict[str, Any]] = {200: dict(page)}
    for status, answer in responses.items():
        shown[status] = {**answer, **page} if int(status) != 413 else answer
    return shown


def _only_sig(request: Request) -> None:
    unknown = sorted(set(request.query_params) - {"sig"})
    if unknown:
        raise RequestValidationError(
            [
                {"type": "extra_forbidden", "loc": ("query", name), "msg": "unknown parameter"}
                for name in unknown
            ]
        )


@router.post(
    "/tokens/{token_id}",
    response_model=TokenOut,
    responses=_with_pages(
        responses_with(
            (401, "the signature is missing or not this token's"),
            (403, "a form post whose CSRF token is not this session's (a page)"),
            (404, "no such token"),
            (409, "the token was completed already; the first completion stands"),
            (410, "the token expired, or its run ended or is being cancelled"),
            (422, "the data does not fit the token's schema (errors lists each problem)"),
        )
    ),
    summary="Complete a callback token with the JSON body (no bearer token: the signature)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the data the run's wait returns: any JSON value but null",
            "content": {
                "application/json": {"schema": {}},
                "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
            },
        }
    },
)
async def complete_token(request: Request, token_id: str, sig: SIG = "") -> Response | TokenOut:
    _only_sig(request)
    app: App = request.app.state.tarry
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return await _answer_form(request, app, token_id, sig)
    if kind != "application/json" and not kind.endswith("+json"):
        return error_response(
            415, "UnsupportedMediaType", "send the data as JSON with Content-Type: application/json"
        )
    try:
        data = loads_strict(await request.body())
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        return error_response(400, "InvalidJSON", f"the request body is not valid JSON: {exc}")
    await app.get_token(token_id, signature=sig)
    run_id = await app.complete_token(token_id, data)
    return TokenOut(token_id=token_id, run_id=run_id)


@router.get(
    "/tokens/{token_id}",
    response_class=HTMLResponse,
    responses={
        200: {"content": {"text/html": {}}, "description": "the confirmation page"},
        401: {"content": {"text/html": {}}, "description": "the signature is not valid"},
        404: {"content": {"text/html": {}}, "description": "no such token"},
        422: {  # the API's own JSON error, as for any route: not a page
            "description": "a query parameter other than sig, or a sig too long to be one",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
        },
    },
    summary="A callback token's confirmation page, with its form (changes nothing)",
)
async def token_page(request: Request, token_id: str, sig: SIG = "") -> Response:
    _only_sig(request)
    app: App = request.app.state.tarry
    guard: Guard = request.app.state.guard
    await guard.ready(app)
    session = guard.session(request)
    found = await _verified(app, token_id, sig)
    if isinstance(found, tuple):
        return _page(request, guard, session, None, sig, status=found[0], error=found[1])
    return _page(request, guard, session, found, sig)


async def _verified(app: App, token_id: str, sig: str) -> TokenInfo | tuple[int, str]:
    """The token if ``sig`` is its signature, else the status and what to tell."""
    try:
        return await app.get_token(token_id, signature=sig)
    except TokenNotFound:
        return 404, "There is no such request: the link may be mistyped, or it was removed."
    except TokenSignatureInvalid as exc:
        return 401, str(exc)
    except (TarryError, ValueError) as exc:
        return status_of(exc), str(exc)


async def _answer_form(request: Request, app: App, token_id: str, sig: str) -> Response:
    """The confirmation page's form: checked like a dashboard form, answered with the
    page again (the outcome, or the error beside what was typed)."""
    guard: Guard = request.app.state.guard
    await guard.ready(app)
    session = guard.session(request)
    form = await request.form()
    kept = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf"}
    found = await _verified(app, token_id, sig)
    if isinstance(found, tuple):
        return _page(request, guard, session, None, sig, status=found[0], error=found[1])
    if not guard.csrf_ok(session, form.get("csrf")):
        error = (
            "This form was not sent: the page was too old, or opened in another browser. "
            "Nothing was recorded; check what it held and send it again."
        )
        return _page(request, guard, session, found, sig, status=403, error=error, kept=kept)
    try:
        await app.complete_token(token_id, _answer(form, found))
    except (TokenAlreadyUsed, TokenGone, PayloadInvalid, TarryError, ValueError) as exc:
        status = 422 if isinstance(exc, PayloadInvalid) else status_of(exc)
        fresh = await _verified(app, token_id, sig)
        shown = fresh if isinstance(fresh, TokenInfo) else found
        return _page(request, guard, session, shown, sig, status=status, error=str(exc), kept=kept)
    done = await app.get_token(token_id)
    return _page(request, guard, session, done, sig, notice="Thank you: your answer was recorded.")


def _answer(form: FormData, info: TokenInfo) -> Any:
    """What the form says: a decision for the approval shape, else its JSON box."""
    choice = form_text(form, "decision")
    if choice in ("approve", "reject") and is_approval(info.schema):
        return {
            "approved": choice == "approve",
            "by": form_text(form, "by"),
            "comment": form_text(form, "comment") or None,
        }
    raw = form_text(form, "data")
    if not raw:
        raise ValueError('the answer is empty: type a JSON value, such as {"ok": true}')
    try:
        return loads_strict(raw)
    except (json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"the answer is not valid JSON: {exc}") from None


def _page(
    request: Request,
    guard: Guard,
    session: Session,
    info: TokenInfo | None,
    sig: str,
    *,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
    kept: dict[str, str] | None = None,
) -> Response:
    response = render(
        "token.html",
        status,
        info=info,
        action=f"{request.url.path}?{request.url.query}" if sig else request.url.path,
        approval=info is not None and is_approval(info.schema),
        schema_text=None if info is None or info.schema is None else pretty(info.schema),
        error=error,
        notice=notice,
        kept=kept or {},
        csrf=session.csrf,
        auth_on=False,  # nothing here needs a login: no log-out button
        path=request.url.path,
    )
    response.headers.update(_HEADERS)
    guard.store(session, request, response)
    return response
