"""Every failure of an API call as ``{"error": {"type", "message"}}`` with a 4xx status.

tarry's own errors map to the status a client can act on; request validation is
422, except a body that is not JSON at all, which is 400. Nothing a client sends
should reach the generic 500 handler.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, Route

from ..errors import (
    PayloadInvalid,
    RunFinished,
    RunNotFound,
    RunStateError,
    SignalConflict,
    SignalNotFound,
    StoreError,
    TarryError,
    TokenAlreadyUsed,
    TokenGone,
    TokenNotFound,
    TokenSignatureInvalid,
    WorkflowNotFound,
)
from .render import render

_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (RunNotFound, 404),
    (WorkflowNotFound, 404),
    (SignalNotFound, 404),
    (RunFinished, 409),
    (SignalConflict, 409),
    (RunStateError, 409),  # a retry of a run that has not failed, a fork of a live run
    (TokenNotFound, 404),
    (TokenAlreadyUsed, 409),  # a callback token completes once
    (TokenGone, 410),  # expired, or its run ended
    (TokenSignatureInvalid, 401),
    (StoreError, 503),
    (PayloadInvalid, 422),  # data that does not fit a typed wait, with its errors
    (ValueError, 400),  # ConfigError, ExpressionError, serde's SerializationError, ...
    (TarryError, 400),
)

_HTTP_TYPES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    410: "Gone",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
}


def status_for(exc: Exception) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_response(
    status: int, type_: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"type": type_, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def _routes(routes: Iterable[BaseRoute]) -> Iterator[Route]:
    for route in routes:
        if isinstance(route, Route):
            yield route
        inner = getattr(route, "original_router", None)  # FastAPI's included routers
        if inner is not None:
            yield from _routes(inner.routes)


def allowed_methods(request: Request) -> str | None:
    """Every method some route serves at this path (Starlette names only the first route's).

    A run id may hold "/", so ``/runs/x/cancel`` also matches ``GET /runs/{run_id}``
    with the id ``x/cancel``; the routes that match without a "/" in a parameter
    are the ones the path means, and only when there are none do the others count.
    A route with no parameter at all (``POST /runs/retry``) means its path more
    than one that takes it for a run id.
    """
    literal: set[str] = set()
    exact: set[str] = set()
    loose: set[str] = set()
    for route in _routes(request.app.router.routes):
        if not route.methods:
            continue
        match, child = route.matches(request.scope)
        if match == Match.NONE:
            continue
        found = child.get("path_params", {})  # with the request's: keep the route's own
        params = [found.get(name) for name in route.param_convertors]
        if not params:
            literal |= route.methods
        elif any("/" in str(value) for value in params):
            loose |= route.methods
        else:
            exact |= route.methods
    methods = literal or exact or loose
    return ", ".join(sorted(methods)) if methods else None


def _describe_validation(errors: Any) -> tuple[int, str, str]:
    items = list(errors)
    if any(e.get("type") == "json_invalid" for e in items):
        first = next(e for e in items if e.get("type") == "json_invalid")
        reason = (first.get("ctx") or {}).get("error", "invalid JSON")
        return 400, "InvalidJSON", f"the request body is not valid JSON: {reason}"
    parts = []
    for e in items[:10]:
        where = ".".join(str(p) for p in e.get("loc", ()))
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return 422, "ValidationError", "; ".join(parts) or "invalid request"


_PAGES = {
    404: ("Not found", "There is no page at {path}: the runs list is at /."),
    405: ("Not allowed", "{path} does not take a {method} request: follow a link or a button."),
}


def _dashboard_error(request: Request, status: int, headers: dict[str, str] | None) -> Response:
    """An error outside the API as a dashboard page that says what to do; it names the
    path asked for, never the server's internals (its database URL)."""
    title, message = _PAGES.get(status, (str(status), "This request was refused ({status})."))
    text = message.format(path=request.url.path, method=request.method, status=status)
    page = render(
        "missing.html", status, title=title, message=text, path=request.url.path, csrf="",
        auth_on=False,
    )  # fmt: skip
    if headers:
        page.headers.update(headers)
    return page


def install(api: FastAPI) -> None:
    """Register the handlers that give every error the one JSON shape."""

    async def on_tarry(request: Request, exc: Exception) -> Response:
        status = status_for(exc)
        if status == 500:
            raise exc
        if isinstance(exc, PayloadInvalid):
            errors = [{"path": e.path, "message": e.message} for e in exc.errors]
            body = {"error": {"type": "PayloadInvalid", "message": str(exc), "errors": errors}}
            return JSONResponse(body, status_code=422)
        return error_response(status, type(exc).__name__, str(exc))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        content_type = request.headers.get("content-type", "")
        whole_body = any(tuple(e.get("loc", ())) == ("body",) for e in errors)
        if whole_body and "json" not in content_type.lower():
            return error_response(
                415,
                "UnsupportedMediaType",
                "send a JSON object with Content-Type: application/json",
            )
        status, type_, message = _describe_validation(errors)
        return error_response(status, type_, message)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            allow = allowed_methods(request)
            if allow:
                headers = {**(headers or {}), "Allow": allow}
        if not request.url.path.startswith(("/api/", "/metrics")):  # machines read JSON
            return _dashboard_error(request, exc.status_code, headers)
        type_ = _HTTP_TYPES.get(exc.status_code, "HTTPError")
        return error_response(exc.status_code, type_, str(exc.detail), headers)

    async def on_bug(request: Request, exc: Exception) -> Response:
        # A bug, not bad input: still the one error shape, without internals.
        return error_response(500, "InternalError", "the server failed; see its log")

    api.add_exception_handler(Exception, on_bug)
    api.add_exception_handler(TarryError, on_tarry)
    api.add_exception_handler(ValueError, on_tarry)
    api.add_exception_handler(RequestValidationError, on_validation)
    api.add_exception_handler(HTTPException, on_http)
