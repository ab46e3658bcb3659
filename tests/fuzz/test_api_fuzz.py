"""Fuzz every /api/v1 operation from its own OpenAPI document with schemathesis.

Each operation gets a fresh SQLite store with the test workflows and a worker
(so started runs move on and later responses carry real run states) behind a
token. Schemathesis generates valid and invalid requests, including missing and
wrong credentials, and checks that no response is a 5xx and that every status,
header and body is the one the document declares.

The schema is loaded from the document FastAPI builds (no store is touched at
import) and reaches each test's server through ``CURRENT``, because
``schemathesis.pytest.from_fixture`` does not run on pytest 9.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.openapi.checks import RejectedPositiveData
from starlette.types import ASGIApp, Receive, Scope, Send

import tarry
from server.flows import FAST, register
from tarry.server import create_app

pytestmark = pytest.mark.slow

TOKEN = "fuzz-token"
# Per operation; the 13 operations take about 35 s in all. Set TARRY_FUZZ_EXAMPLES for a
# deeper run.
MAX_EXAMPLES = int(os.environ.get("TARRY_FUZZ_EXAMPLES", "150"))
# The suite runs the same examples every time, so that a run's verdict is the code's,
# not the draw's; TARRY_FUZZ_RANDOM=1 draws new ones (a search for new failures).
DERANDOMIZE = os.environ.get("TARRY_FUZZ_RANDOM") != "1"


class CurrentServer:
    """A stable ASGI app for the schema that forwards to the running test's server."""

    def __init__(self) -> None:
        self.server: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.server is not None, "no server: use the `server` fixture"
        await self.server(scope, receive, send)


CURRENT = CurrentServer()

schema = schemathesis.openapi.from_dict(
    create_app(tarry.App("sqlite:///never-opened.db")).openapi()
)
schema.app = CURRENT


@schema.auth()
class Bearer:
    """The server's token on every case, except those that fuzz the credentials."""

    def get(self, case: Any, ctx: Any) -> str:
        return TOKEN

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but one documented limit the JSON Schema cannot express.

    ``payload``/``data`` are "any JSON", but an integer beyond 64 bits cannot be
    stored (orjson): tarry refuses it with a 400 naming the limit (README,
    "Limits and the errors they give"; tests/security/test_hostile_input.py).
    """
    if isinstance(failure, RejectedPositiveData) and response.status_code == 400:
        error = response.json()["error"]
        return not (error["type"] == "InvalidJSON" and "64-bit range" in error["message"])
    return True


@pytest.fixture
def server(sqlite_url: str) -> Any:
    app = register(tarry.App(sqlite_url, **FAST))
    CURRENT.server = create_app(app, worker=True, token=TOKEN)
    yield CURRENT.server
    CURRENT.server = None
    app.close_sync()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=DERANDOMIZE,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_openapi_document(case: Any, server: Any) -> None:
    case.call_and_validate()


def test_the_document_declares_the_error_shape_for_every_4xx() -> None:
    doc = create_app(tarry.App("sqlite:///never-opened.db")).openapi()
    error_ref = "#/components/schemas/ErrorOut"
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            # A page (a callback token's link, opened from an e-mail) takes no body and
            # answers its errors as pages; a bad query is still the API's JSON error.
            page = method == "get" and "text/html" in operation["responses"]["200"]["content"]
            needed = {"401", "422"} if page else {"400", "401", "413", "415", "422"}
            assert needed <= statuses, (method, path)
            for status, response in operation["responses"].items():
                if status.startswith("4") and (status == "422" or not page):
                    body = response["content"]["application/json"]["schema"]
                    assert body == {"$ref": error_ref}, (method, path, status)
    signal_data = doc["components"]["schemas"]["SignalBody"]["properties"]["data"]
    assert signal_data["not"] == {"type": "null"}
