"""Hostile and bad input: each gets a clear 4xx or a clear error, and nothing stored changes.

Every test takes a snapshot of the store (every run with its steps, or the SQLite
file's rows) before the bad input and compares it after. Basic bad bodies (wrong
field types, unknown fields, a body over the limit) are in tests/server; here
are the payloads built to break a parser or a store, and names built to break
SQL or HTML.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

import tarry
from server.conftest import asgi_client
from server.flows import FAST, register
from tarry.server import create_app

TOO_DEEP = 10_000  # levels of nesting sent at the parsers
MAX_DEPTH = 254  # the deepest nesting the store keeps (orjson refuses 255)
INT_MAX = 2**64 - 1  # the largest integer the store keeps
INT_MIN = -(2**63)


def nested(depth: int, leaf: Any = None, *, dicts: bool = False) -> Any:
    """``depth`` levels of lists (or of ``{"a": ...}``) around ``leaf`` (or around nothing)."""
    value: Any = ({} if dicts else []) if leaf is None else leaf
    for _ in range(depth - (1 if leaf is None else 0)):
        value = {"a": value} if dicts else [value]
    return value


def deep_text(depth: int, *, dicts: bool = False) -> str:
    if dicts:
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth + "]" * depth


async def snapshot(app: tarry.App) -> list[tuple[Any, ...]]:
    """Every run in the store with its payload, output, error, wait and steps."""
    page = await app.list_runs(limit=1000)
    runs = []
    for listed in page.items:
        run = await app.get_run(listed.id)
        steps = tuple((s.id, s.kind, s.status, repr(s.output), repr(s.error)) for s in run.steps)
        waiting = run.waiting_for and (run.waiting_for.kind, run.waiting_for.key)
        runs.append(
            (run.id, run.workflow, run.status, repr(run.payload), repr(run.output), waiting, steps)
        )
    return runs


def sqlite_rows(url: str) -> list[str]:
    """Every row of every table in a SQLite store, read without tarry."""
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return list(conn.iterdump())


def assert_error(response: httpx.Response, status: int, type_: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    if type_ is not None:
        assert body["error"]["type"] == type_, body
    message: str = body["error"]["message"]
    assert message
    return message


@pytest.fixture
async def quiet_app(sqlite_url: str) -> AsyncIterator[tarry.App]:
    """The test workflows with no worker: what is stored stays as it is."""
    app = register(tarry.App(sqlite_url, **FAST))
    yield app
    await app.close()


@pytest.fixture
async def seeded(quiet_app: tarry.App) -> tarry.App:
    """Some runs, a buffered signal and a queued message already stored."""
    await quiet_app.start("approval", {"order": "o-1"}, run_id="seed-1")
    await quiet_app.start("quick", [1, "two", {"three": 3.0}], run_id="seed-2")
    await quiet_app.send_signal("approval:o-9", {"approved": True})
    await quiet_app.send_message("seed-1", "note", {"n": 1})
    return quiet_app


@pytest.fixture
async def client(seeded: tarry.App) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(seeded) as c:
        yield c


async def post_raw(client: httpx.AsyncClient, path: str, raw: str | bytes) -> httpx.Response:
    content = raw.encode() if isinstance(raw, str) else raw
    headers = {"content-type": "application/json"}
    return await client.post(path, content=content, headers=headers)


# -- the API: bodies built to break the parser ----------------------------------------------

ROUTES = [
    ("/api/v1/runs", '{"workflow": "quick", "payload": %s}'),
    ("/api/v1/signals", '{"signal": "approval:o-1", "data": %s}'),
    ("/api/v1/events", '{"name": "test/quick", "data": %s}'),
    ("/api/v1/runs/seed-1/messages", '{"name": "decision", "data": %s}'),
    ("/api/v1/runs/seed-1/cancel", '{"reason": %s}'),
]

HOSTILE_VALUES = {
    "10,000 nested lists": (deep_text(TOO_DEEP), "nests arrays and objects too deeply"),
    "10,000 nested objects": (
        deep_text(TOO_DEEP, dicts=True),
        "nests arrays and objects too deeply",
    ),
    "2**64": (str(2**64), f"the integer {2**64} is beyond the 64-bit range"),
    "-2**63 - 1": (str(-(2**63) - 1), f"the integer {-(2**63) - 1} is beyond the 64-bit range"),
    "a 5,000 digit integer": ("7" * 5000, "(5,000 digits) is beyond the 64-bit range"),
    "NaN": ('{"x": NaN}', "NaN is not JSON"),
    "-Infinity": ("[-Infinity]", "-Infinity is not JSON"),
    "1e999": ('{"x": 1e999}', "1e999 is out of the range of a double"),
}


@pytest.mark.parametrize(("path", "template"), ROUTES, ids=[r[0] for r in ROUTES])
@pytest.mark.parametrize("value", list(HOSTILE_VALUES))
async def test_hostile_json_is_a_400_naming_the_problem(
    client: httpx.AsyncClient, seeded: tarry.App, path: str, template: str, value: str
) -> None:
    raw, reason = HOSTILE_VALUES[value]
    before = await snapshot(seeded)
    started = time.monotonic()
    response = await post_raw(client, path, template % raw)
    message = assert_error(response, 400, "InvalidJSON")
    assert reason in message
    assert time.monotonic() - started < 5
    assert await snapshot(seeded) == before


@pytest.mark.parametrize("path", [r[0] for r in ROUTES])
async def test_a_whole_body_nested_10000_deep_is_a_400(
    client: httpx.AsyncClient, seeded: tarry.App, path: str
) -> None:
    before = await snapshot(seeded)
    for dicts in (False, True):
        message = assert_error(await post_raw(client, path, deep_text(TOO_DEEP, dicts=dicts)), 400)
        assert "too deeply" in message
    assert await snapshot(seeded) == before


async def test_the_nesting_limit_is_254_levels_in_one_value(
    client: httpx.AsyncClient, seeded: tarry.App
) -> None:
    """Deeper than the store keeps but shallow enough to parse: refused by the store."""
    before = await snapshot(seeded)
    for depth in (MAX_DEPTH + 1, 900):
        body = {"workflow": "quick", "payload": nested(depth)}
        message = assert_error(await client.post("/api/v1/runs", json=body), 400)
        assert "start payload" in message and "Recursion limit" in message
    assert await snapshot(seeded) == before
    fits = nested(MAX_DEPTH, leaf="bottom")
    response = await client.post("/api/v1/runs", json={"workflow": "quick", "payload": fits})
    assert response.status_code == 201, response.text
    run = (await client.get(f"/api/v1/runs/{response.json()['run_id']}")).json()
    assert run["payload"] == fits


async def test_integers_at_the_64_bit_edges_are_kept_exactly(
    client: httpx.AsyncClient,
) -> None:
    payload = {"max": INT_MAX, "min": INT_MIN, "big_float": 1.5e300, "neg_zero": -0.0}
    response = await client.post("/api/v1/runs", json={"workflow": "quick", "payload": payload})
    assert response.status_code == 201, response.text
    run = (await client.get(f"/api/v1/runs/{response.json()['run_id']}")).json()
    assert run["payload"] == payload
    assert isinstance(run["payload"]["max"], int) and run["payload"]["max"] == INT_MAX


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe\xfd",
        b'{"workflow": "quick", "payload": "\xc3\x28"}',
        b'{"workflow": "quick"}\x00',
        b"\x00" * 100,
        b'{"workflow": "quick", "payload": ' + b"[" * 50,
    ],
    ids=["not-utf8", "bad-utf8-in-string", "trailing-nul", "nuls", "truncated"],
)
async def test_garbage_bytes_are_a_400(
    client: httpx.AsyncClient, seeded: tarry.App, raw: bytes
) -> None:
    before = await snapshot(seeded)
    assert_error(await post_raw(client, "/api/v1/runs", raw), 400, "InvalidJSON")
    assert await snapshot(seeded) == before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/runs", {"workflow": {"$ne": None}}),
        ("/api/v1/runs", {"workflow": "quick", "run_id": ["a", "b"]}),
        ("/api/v1/runs", {"workflow": "quick", "run_id": ""}),
        ("/api/v1/signals", {"signal": "approval:o-1", "strict": "true"}),
        ("/api/v1/signals", {"signal": "approval:o-1", "strict": 0}),
        ("/api/v1/signals", {"signal": {"key": "approval:o-1"}}),
        ("/api/v1/events", {"name": ["test/quick"]}),
        ("/api/v1/events", {"name": "test/quick", "id": 5}),
        ("/api/v1/runs/seed-1/messages", {"name": None, "data": {}}),
        ("/api/v1/runs/seed-1/cancel", {"reason": ["x"]}),
        ("/api/v1/runs/seed-1/cancel", {"reason": "x", "force": True}),
    ],
)
async def test_wrong_types_are_a_422_naming_the_field(
    client: httpx.AsyncClient, seeded: tarry.App, path: str, body: Any
) -> None:
    before = await snapshot(seeded)
    message = assert_error(await client.post(path, json=body), 422, "ValidationError")
    assert message.startswith("body.")
    assert await snapshot(seeded) == before


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "9" * 25},
        {"cursor": "9223372036854775808"},
        {"cursor": "²"},
        {"cursor": "-1"},
        {"limit": "1" * 30},
        {"status": "waiting'; DROP TABLE runs; --"},
        {"stauts": "waiting"},
    ],
)
async def test_hostile_query_parameters_are_a_422(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    message = assert_error(await client.get("/api/v1/runs", params=params), 422, "ValidationError")
    assert f"query.{next(iter(params))}" in message


async def test_a_hostile_cursor_on_the_dashboard_is_ignored(
    client: httpx.AsyncClient,
) -> None:
    for cursor in ("9" * 25, "²", "1 OR 1=1"):
        page = await client.get("/", params={"cursor": cursor})
        assert page.status_code == 200
        assert "seed-1" in page.text


async def test_oversize_bodies_store_nothing(
    seeded: tarry.App,
) -> None:
    before = await snapshot(seeded)
    async with asgi_client(seeded, max_body=4096) as small:
        for path, template in ROUTES:
            blob = json.dumps("x" * 5000)
            message = assert_error(await post_raw(small, path, template % blob), 413)
            assert "4,096 bytes" in message

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(100):
                    yield b"[" * 100

            streamed = await small.post(
                path, content=chunks(), headers={"content-type": "application/json"}
            )
            assert_error(streamed, 413, "PayloadTooLarge")
    assert await snapshot(seeded) == before


async def test_the_dashboard_refuses_hostile_json_fields(
    client: httpx.AsyncClient, seeded: tarry.App
) -> None:
    page = await client.get("/workflows")
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    before = await snapshot(seeded)
    for payload in (deep_text(TOO_DEEP), str(2**64), "NaN", "[1e999]", "{bad"):
        response = await client.post(
            "/workflows/start", data={"csrf": csrf, "workflow": "quick", "payload": payload}
        )
        assert response.status_code == 400, response.text
        assert "payload is not valid JSON" in response.text
    for data in (deep_text(TOO_DEEP, dicts=True), str(-(2**63) - 1)):
        response = await client.post(
            "/runs/seed-1/decide", data={"csrf": csrf, "decision": "custom", "data": data}
        )
        assert response.status_code == 400, response.text
    assert await snapshot(seeded) == before


@pytest.mark.slow
def test_the_cli_refuses_an_integer_beyond_64_bits(sqlite_url: str, tmp_path: Path) -> None:
    from cli.conftest import Tarry

    tarry_cli = Tarry(sqlite_url, tmp_path)
    assert tarry_cli("init").returncode == 0  # the CLI reads only a store that exists
    done = tarry_cli("start", "quick", "--payload", '{"n": 18446744073709551616}')
    assert done.returncode == 2, done.stderr
    assert "18446744073709551616 is beyond the 64-bit range" in done.stderr
    listed = tarry_cli("runs", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["items"] == []


# -- the client API: the same values through App.start and friends --------------------------


async def test_app_refuses_hostile_values_with_a_value_error(seeded: tarry.App) -> None:
    before = await snapshot(seeded)
    hostile = {
        "nested lists": nested(TOO_DEEP),
        "nested dicts": nested(TOO_DEEP, dicts=True),
        "2**64": {"n": 2**64},
        "-2**63 - 1": [-(2**63) - 1],
        "lone surrogate": "\ud800",
    }
    for label, value in hostile.items():
        calls: list[tuple[str, Callable[[], Any]]] = [
            ("start payload", lambda v=value: seeded.start("quick", v)),
            ("signal", lambda v=value: seeded.send_signal("approval:o-1", v)),
            ("event", lambda v=value: seeded.send_event("test/quick", v)),
            ("message", lambda v=value: seeded.send_message("seed-1", "note", v)),
        ]
        for what, call in calls:
            with pytest.raises(ValueError) as caught:
                await call()
            message = str(caught.value)
            assert what in message, (label, message)
            assert any(
                reason in message
                for reason in ("Recursion limit", "beyond 64 bits", "surrogates not allowed")
            ), (label, message)
    assert await snapshot(seeded) == before


async def test_app_refuses_nan_instead_of_storing_null(seeded: tarry.App) -> None:
    before = await snapshot(seeded)
    with pytest.raises(ValueError, match="start payload"):
        await seeded.start("quick", {"n": float("nan")})
    assert await snapshot(seeded) == before


# -- the engine: oversize outputs, bad durations, bad CEL -----------------------------------


async def test_oversize_step_and_run_outputs_fail_naming_them(sqlite_url: str) -> None:
    app = tarry.App(sqlite_url, **FAST, max_output_bytes=1024)

    @app.workflow("big-step")
    async def big_step(ctx: tarry.Context, step: tarry.Step) -> Any:
        await step.run("small", lambda: {"ok": 1})
        await step.run("huge", lambda: "x" * 2000)
        return "never"

    @app.workflow("big-output")
    async def big_output(ctx: tarry.Context, step: tarry.Step) -> Any:
        await step.run("small", lambda: {"ok": 1})
        return "y" * 2000

    try:
        async with app.worker():
            step_run = await app.start("big-step", {"order": "<o-1>"}, run_id="big-step-1")
            with pytest.raises(tarry.RunFailed, match=r"step 'huge'.*2,002 bytes.*1,024"):
                await app.result(step_run, timeout=10)
            output_run = await app.start("big-output", {"order": "<o-2>"})
            with pytest.raises(tarry.RunFailed, match=r"output of run .*2,002 bytes"):
                await app.result(output_run, timeout=10)
        run = await app.get_run(step_run)
        assert run.status == "failed" and run.payload == {"order": "<o-1>"}
        assert [(s.id, s.status, s.output, s.attempts) for s in run.steps] == [
            ("small", "completed", {"ok": 1}, 1),
            ("huge", "failed", None, 1),  # no retry
        ]
        assert "huge" in run.error["message"] and "2,002 bytes" in run.error["message"]
        other = await app.get_run(output_run)
        assert other.payload == {"order": "<o-2>"} and other.output is None
        assert [(s.id, s.output) for s in other.steps] == [("small", {"ok": 1})]
    finally:
        await app.close()


async def test_bad_durations_and_cel_fail_the_run_naming_them(sqlite_url: str) -> None:
    app = tarry.App(sqlite_url, **FAST)

    @app.workflow("bad-duration")
    async def bad_duration(ctx: tarry.Context, step: tarry.Step) -> Any:
        await step.run("before", lambda: 1)
        await step.sleep("nap", "5 parsecs")

    @app.workflow("bad-timeout")
    async def bad_timeout(ctx: tarry.Context, step: tarry.Step) -> Any:
        await step.run("before", lambda: 1)
        await step.wait_for_signal("w", signal="k", timeout="-3h")

    @app.workflow("bad-cel")
    async def bad_cel(ctx: tarry.Context, step: tarry.Step) -> Any:
        await step.run("before", lambda: 1)
        await step.wait_for_event("w", event="e", timeout="1h", if_="async.data.x == ")

    try:
        async with app.worker():
            runs = {w: await app.start(w, {}) for w in ("bad-duration", "bad-timeout", "bad-cel")}
            for run_id in runs.values():
                with pytest.raises(tarry.RunFailed):
                    await app.result(run_id, timeout=10)
        duration = await app.get_run(runs["bad-duration"])
        assert "'5 parsecs'" in duration.error["message"]
        timeout = await app.get_run(runs["bad-timeout"])
        assert "'-3h'" in timeout.error["message"]
        cel = await app.get_run(runs["bad-cel"])
        assert cel.error["type"] == "ExpressionError"
        assert "line 1, column" in cel.error["message"]
        failed = [s for s in cel.steps if s.id == "w"]
        assert failed and failed[0].status == "failed" and failed[0].attempts == 1
        assert failed[0].error["type"] == "ExpressionError"
        for run_id in runs.values():
            run = await app.get_run(run_id)
            assert run.waiting_for is None
            assert [(s.id, s.output) for s in run.steps][:1] == [("before", 1)]
    finally:
        await app.close()


# -- names full of SQL and HTML metacharacters ----------------------------------------------

SQL = "'; DROP TABLE runs; --"
HTML = "<script>alert(1)</script>"
EVIL_WORKFLOW = f"{SQL}{HTML}"
EVIL_EVENT = f'app/"{HTML}"; DELETE FROM events; --'
EVIL_KEY = f"approval:{SQL}{HTML}"
EVIL_MESSAGE = f"<img src=x onerror=alert(2)>{SQL}"
EVIL_RUN_IDS = [SQL, HTML, f"{HTML}/../{SQL}", "run%20id?x=1#frag"]


def q(run_id: str) -> str:
    """A run id as a path segment: every reserved character percent-encoded."""
    return quote(run_id, safe="")


def escaped(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )


def evil_app(url: str) -> tarry.App:
    app = tarry.App(url, **FAST)

    @app.workflow(EVIL_WORKFLOW, on=EVIL_EVENT)
    async def evil(ctx: tarry.Context, step: tarry.Step) -> Any:
        # one run waits on a key at a time: the others add their run id to it
        key = EVIL_KEY if ctx.run_id == HTML else f"{EVIL_KEY}:{ctx.run_id}"
        decision = await step.wait_for_signal("wait", signal=key, timeout="1h")
        note = await step.wait_for_message("note", name=EVIL_MESSAGE, timeout="1h")
        return {"decision": decision, "note": None if note is None else note.data}

    return app


async def wait_status(app: tarry.App, run_id: str, status: str) -> tarry.Run:
    give_up = time.monotonic() + 10
    while (run := await app.get_run(run_id)).status != status:
        assert time.monotonic() < give_up, run
        await asyncio.sleep(0.02)
    return run


async def test_hostile_names_are_stored_verbatim_and_escaped_on_the_dashboard(
    sqlite_url: str,
) -> None:
    app = evil_app(sqlite_url)
    try:
        async with app.worker(), asgi_client(app) as client:
            for run_id in EVIL_RUN_IDS:
                body = {"workflow": EVIL_WORKFLOW, "payload": {"note": HTML}, "run_id": run_id}
                response = await client.post("/api/v1/runs", json=body)
                assert response.status_code == 201, response.text
                assert response.json() == {"run_id": run_id}
            sent = await client.post("/api/v1/events", json={"name": EVIL_EVENT, "data": {}})
            assert sent.status_code == 200, sent.text
            [by_event] = sent.json()["started"]
            for run_id in EVIL_RUN_IDS:
                await wait_status(app, run_id, "waiting")

            # the API shows each name back exactly
            first = EVIL_RUN_IDS[1]
            run = (await client.get(f"/api/v1/runs/{q(first)}")).json()
            assert run["id"] == first and run["workflow"] == EVIL_WORKFLOW
            assert run["payload"] == {"note": HTML}
            assert run["waiting_for"]["key"] == EVIL_KEY
            for run_id in EVIL_RUN_IDS:
                got = await client.get(f"/api/v1/runs/{q(run_id)}")
                assert got.status_code == 200 and got.json()["id"] == run_id, got.text
            listed = (await client.get("/api/v1/runs", params={"workflow": EVIL_WORKFLOW})).json()
            assert {r["id"] for r in listed["items"]} == {*EVIL_RUN_IDS, by_event}
            [workflow] = (await client.get("/api/v1/workflows")).json()
            assert workflow["id"] == EVIL_WORKFLOW
            assert workflow["triggers"] == [{"event": EVIL_EVENT, "if": None}]

            # the dashboard shows them escaped, never raw
            pages = ["/", "/workflows", *(f"/runs/{q(r)}" for r in EVIL_RUN_IDS)]
            for url in pages:
                page = await client.get(
                    url, params={"workflow": EVIL_WORKFLOW} if url == "/" else {}
                )
                assert page.status_code == 200, (url, page.text)
                assert HTML not in page.text and EVIL_MESSAGE not in page.text, url
                assert escaped(HTML) in page.text, url
            listing = (await client.get("/", params={"workflow": EVIL_WORKFLOW})).text
            for run_id in EVIL_RUN_IDS:  # links keep "/", "..", "?" and "#" inside the id
                assert f'href="/runs/{q(run_id)}"' in listing, run_id
            run_page = (await client.get(f"/runs/{q(first)}")).text
            assert f'action="/runs/{q(first)}/cancel"' in run_page
            assert escaped(EVIL_KEY) in run_page and escaped(EVIL_WORKFLOW) in run_page

            # the signal and the message reach the runs by their names
            signal = await client.post(
                "/api/v1/signals", json={"signal": EVIL_KEY, "data": {"by": SQL}}
            )
            assert signal.json() == {"status": "delivered", "run_id": first}
            delivered = first
            await wait_status(app, delivered, "waiting")
            parked = await app.get_run(delivered)
            assert parked.waiting_for is not None and parked.waiting_for.key == EVIL_MESSAGE
            message_page = (await client.get(f"/runs/{q(delivered)}")).text
            assert EVIL_MESSAGE not in message_page and escaped(EVIL_MESSAGE) in message_page
            sent_message = await client.post(
                f"/api/v1/runs/{q(delivered)}/messages", json={"name": EVIL_MESSAGE, "data": HTML}
            )
            assert sent_message.status_code == 202, sent_message.text
            done = await wait_status(app, delivered, "completed")
            assert done.output == {"decision": {"by": SQL}, "note": HTML}

            # unknown names are 404s that quote the name, in the one error shape
            for missing in (f"{SQL}x", f"{HTML}x"):
                message = assert_error(
                    await client.get(f"/api/v1/runs/{q(missing)}"), 404, "RunNotFound"
                )
                assert repr(missing) in message
                page = await client.get(f"/runs/{q(missing)}")
                assert page.status_code == 404 and HTML not in page.text
            unknown = await client.post("/api/v1/runs", json={"workflow": HTML})
            assert repr(HTML) in assert_error(unknown, 404, "WorkflowNotFound")

        # every table is still there and every run with it
        with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
            (count,) = conn.execute("SELECT count(*) FROM runs").fetchone()
        assert count == len(EVIL_RUN_IDS) + 1
    finally:
        await app.close()


# -- a store from a newer tarry -------------------------------------------------------------


async def test_a_store_from_a_newer_schema_is_refused_and_left_alone(sqlite_url: str) -> None:
    app = register(tarry.App(sqlite_url, **FAST))
    await app.start("approval", {"order": "o-1"}, run_id="kept")
    await app.close()
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE tarry_meta SET value = '999' WHERE key = 'schema_version'")
    conn.close()
    before = sqlite_rows(sqlite_url)

    newer = register(tarry.App(sqlite_url, **FAST))
    try:
        for call in (
            lambda: newer.start("quick", {}),
            lambda: newer.get_run("kept"),
            lambda: newer.list_runs(),
            lambda: newer.send_signal("approval:o-1", {}),
        ):
            with pytest.raises(tarry.SchemaTooNew) as caught:
                await call()
            assert "999" in str(caught.value) and "upgrade tarry" in str(caught.value)
        with pytest.raises(tarry.SchemaTooNew):
            async with newer.worker():
                pass
    finally:
        await newer.close()
    assert sqlite_rows(sqlite_url) == before


async def test_a_server_on_a_newer_store_refuses_to_start(sqlite_url: str) -> None:
    app = register(tarry.App(sqlite_url, **FAST))
    await app.start("quick", {}, run_id="kept")
    await app.close()
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE tarry_meta SET value = '999' WHERE key = 'schema_version'")
    conn.close()
    before = sqlite_rows(sqlite_url)
    server = create_app(register(tarry.App(sqlite_url, **FAST)), worker=True)
    with pytest.raises(tarry.SchemaTooNew, match="999"):
        async with server.router.lifespan_context(server):
            pass
    assert sqlite_rows(sqlite_url) == before


NAME_ATTACKS = [
    ("/api/v1/runs", {"workflow": "quick", "payload": {}, "run_id": "r" * 1_000_000}, "run_id"),
    ("/api/v1/runs", {"workflow": "quick", "payload": {}, "run_id": "a\u0000b"}, "run_id"),
    ("/api/v1/signals", {"signal": "s" * 1_000_000, "data": {}}, "signal key"),
    ("/api/v1/signals", {"signal": "nul\u0000", "data": {}}, "signal key"),
    ("/api/v1/events", {"name": "e" * 1_000_000, "data": {}}, "event name"),
    ("/api/v1/events", {"name": "app/x", "data": {}, "id": "i" * 1_000_000}, "event id"),
    ("/api/v1/runs/seed-1/messages", {"name": "m" * 1_000_000, "data": {}}, "message name"),
]


@pytest.mark.parametrize(("path", "body", "field"), NAME_ATTACKS)
async def test_a_name_no_index_can_hold_is_a_prompt_400_that_stores_nothing(
    seeded: tarry.App, client: httpx.AsyncClient, path: str, body: dict[str, Any], field: str
) -> None:
    before = await snapshot(seeded)
    started = time.monotonic()
    response = await client.post(path, json=body)
    message = assert_error(response, 400)
    assert field in message and ("256" in message or "NUL" in message), message
    assert time.monotonic() - started < 5  # an answer, not 30 s of retried "outage"
    assert await snapshot(seeded) == before


async def test_a_4kb_match_value_from_a_payload_is_matched(
    seeded: tarry.App, client: httpx.AsyncClient
) -> None:
    @seeded.workflow("onboard")
    async def onboard(ctx: tarry.Context, step: tarry.Step) -> Any:
        found = await step.wait_for_event(
            "done", event="app/onboarded", match="data.userId", timeout="1h"
        )
        return None if found is None else "matched"

    user = "u" * 4096
    run_id = await seeded.start("onboard", {"userId": user})
    async with seeded.worker():
        while (await seeded.get_run(run_id)).status != "waiting":
            await asyncio.sleep(0.01)
        response = await client.post(
            "/api/v1/events", json={"name": "app/onboarded", "data": {"userId": user}}
        )
        assert response.status_code == 200, response.text
        assert response.json()["resumed"] == [run_id]
        assert await seeded.result(run_id, timeout=10) == "matched"


async def test_an_event_nested_to_the_limit_is_accepted_not_a_500(
    client: httpx.AsyncClient, seeded: tarry.App
) -> None:
    fits = nested(MAX_DEPTH, leaf="bottom")
    response = await client.post("/api/v1/events", json={"name": "app/deep", "data": fits})
    assert response.status_code == 200, response.text
    (event_id,) = response.json()["event_ids"]
    stored = await seeded.list_events(name="app/deep")
    assert [(e.id, e.data) for e in stored.items] == [(event_id, fits)]
