"""Who may call: bearer tokens on the API, the dashboard's signed session and CSRF, and
``tarry serve`` on a public address.

tests/server covers the basics (every route needs the token, every form needs its
CSRF token, a forged cookie is ignored); these are the near misses an attacker
would try, on a server with a token.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest

import tarry
from server.conftest import asgi_client
from server.flows import FAST, register
from tarry.server import create_app
from tarry.server.auth import COOKIE

TOKEN = "s3cret-Token-0123456789"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def set_cookie(response: httpx.Response) -> Any:
    """The session cookie ``response`` sets, parsed with its attributes."""
    headers = response.headers.get_list("set-cookie")
    assert len(headers) == 1, headers
    jar: SimpleCookie = SimpleCookie()
    jar.load(headers[0])
    assert COOKIE in jar, headers
    return jar[COOKIE]


@pytest.fixture
async def app(sqlite_url: str) -> AsyncIterator[tarry.App]:
    app = register(tarry.App(sqlite_url, **FAST))
    await app.start("approval", {"order": "sec-1"}, run_id="parked")
    yield app
    await app.close()


@pytest.fixture
async def client(app: tarry.App) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app, token=TOKEN) as c:
        yield c


async def logged_in(client: httpx.AsyncClient) -> str:
    """Log ``client`` in to the dashboard; the CSRF token of its session."""
    login = await client.get("/login")
    response = await client.post(
        "/login", data={"csrf": csrf_of(login.text), "token": TOKEN, "next": "/"}
    )
    assert response.status_code == 303, response.text
    return csrf_of((await client.get("/workflows")).text)


# -- the API's bearer token -----------------------------------------------------------------

NEAR_MISSES = {
    "none": None,
    "empty": "",
    "scheme only": "Bearer",
    "scheme and a space": "Bearer ",
    "scheme and spaces": "Bearer    ",
    "last char differs": f"Bearer {TOKEN[:-1]}{chr(ord(TOKEN[-1]) + 1)}",
    "first char differs": f"Bearer X{TOKEN[1:]}",
    "one char short": f"Bearer {TOKEN[:-1]}",
    "one char long": f"Bearer {TOKEN}0",
    "a prefix": f"Bearer {TOKEN[:4]}",
    "upper case": f"Bearer {TOKEN.upper()}",
    "trailing NUL": f"Bearer {TOKEN}\x00",
    "no scheme": TOKEN,
    "Basic": f"Basic {TOKEN}",
    "Basic base64": f"Basic {base64.b64encode(f'x:{TOKEN}'.encode()).decode()}",
    "Token scheme": f"Token {TOKEN}",
    "two tokens": f"Bearer {TOKEN}, Bearer {TOKEN}",
    "non-ascii": f"Bearer {TOKEN[:-1]}é",
}


@pytest.mark.parametrize("name", list(NEAR_MISSES))
async def test_the_api_refuses_near_miss_tokens(
    client: httpx.AsyncClient, app: tarry.App, name: str
) -> None:
    value = NEAR_MISSES[name]
    headers = {} if value is None else {"authorization": value.encode("utf-8")}
    before = (await app.get_run("parked")).status
    for method, path, body in (
        ("GET", "/api/v1/runs", None),
        ("GET", "/api/v1/runs/parked", None),
        ("POST", "/api/v1/runs/parked/cancel", None),
        ("POST", "/api/v1/runs", {"workflow": "quick"}),
        ("POST", "/api/v1/signals", {"signal": "approval:sec-1", "data": {"approved": True}}),
    ):
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (name, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]
        assert error["type"] == "Unauthorized" and TOKEN not in error["message"]
    assert [r.id for r in (await app.list_runs()).items] == ["parked"]
    assert (await app.get_run("parked")).status == before


async def test_the_token_is_not_taken_from_anywhere_but_the_header(
    client: httpx.AsyncClient,
) -> None:
    for kwargs in (
        {"params": {"token": TOKEN}},
        {"params": {"access_token": TOKEN}},
        {"headers": {"cookie": f"token={TOKEN}; {COOKIE}={TOKEN}"}},
        {"headers": {"x-api-key": TOKEN}},
    ):
        response = await client.get("/api/v1/workflows", **kwargs)
        assert response.status_code == 401, kwargs


async def test_the_right_token_in_any_case_of_the_scheme_is_accepted(
    client: httpx.AsyncClient,
) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        response = await client.get(
            "/api/v1/workflows", headers={"authorization": f"{scheme} {TOKEN}"}
        )
        assert response.status_code == 200, scheme


async def test_a_dashboard_session_is_not_an_api_credential(client: httpx.AsyncClient) -> None:
    await logged_in(client)
    assert (await client.get("/")).status_code == 200
    assert (await client.get("/api/v1/runs")).status_code == 401


# -- the dashboard: CSRF, cookies, the signed session ---------------------------------------


@pytest.mark.parametrize(
    "csrf",
    [None, "", " ", "x", "CSRF", "{csrf}x", "{csrf_short}", "{csrf_upper}"],
    ids=["missing", "empty", "space", "junk", "name", "longer", "shorter", "case"],
)
async def test_a_logged_in_form_post_needs_its_own_csrf_token(
    client: httpx.AsyncClient, app: tarry.App, csrf: str | None
) -> None:
    real = await logged_in(client)
    forms = [
        ("/runs/parked/cancel", {"reason": "csrf"}),
        ("/runs/parked/decide", {"decision": "approve"}),
        ("/workflows/start", {"workflow": "quick"}),
        ("/events", {"name": "test/quick"}),
        ("/logout", {}),
    ]
    for path, form in forms:
        data = dict(form)
        if csrf is not None:
            data["csrf"] = csrf.format(csrf=real, csrf_short=real[:-1], csrf_upper=real.swapcase())
        response = await client.post(path, data=data)
        assert response.status_code == 403, (path, csrf, response.text)
        assert "set-cookie" not in response.headers
    # nothing happened: the run still waits, nothing started, still logged in
    assert (await app.get_run("parked")).status == "queued"
    assert [r.id for r in (await app.list_runs()).items] == ["parked"]
    assert (await client.get("/")).status_code == 200


async def test_a_csrf_token_from_another_session_is_refused(
    client: httpx.AsyncClient, app: tarry.App
) -> None:
    mine = await logged_in(client)
    async with asgi_client(app, token=TOKEN) as other:
        theirs = await logged_in(other)
        assert theirs != mine
        response = await client.post("/workflows/start", data={"csrf": theirs, "workflow": "quick"})
        assert response.status_code == 403
    assert [r.id for r in (await app.list_runs()).items] == ["parked"]


async def test_a_form_post_without_the_cookie_is_refused(
    client: httpx.AsyncClient, app: tarry.App
) -> None:
    csrf = await logged_in(client)
    client.cookies.clear()
    response = await client.post("/workflows/start", data={"csrf": csrf, "workflow": "quick"})
    assert response.status_code == 403
    assert [r.id for r in (await app.list_runs()).items] == ["parked"]


async def test_cookies_are_httponly_samesite_and_secure_over_https(app: tarry.App) -> None:
    async with asgi_client(app, token=TOKEN) as plain:
        cookie = set_cookie(await plain.get("/login"))
        assert cookie["httponly"] is True
        assert cookie["samesite"].lower() == "lax"
        assert cookie["path"] == "/"
        assert not cookie["secure"]
        assert 0 < int(cookie["max-age"]) <= 24 * 3600
        login = await plain.get("/login")
        done = await plain.post(
            "/login", data={"csrf": csrf_of(login.text), "token": TOKEN, "next": "/"}
        )
        after = set_cookie(done)  # a new session on login
        assert after["httponly"] is True and after["samesite"].lower() == "lax"
        assert after.value != cookie.value
    transport = httpx.ASGITransport(app=create_app(app, token=TOKEN))
    async with httpx.AsyncClient(transport=transport, base_url="https://tarry.example") as tls:
        cookie = set_cookie(await tls.get("/login"))
        assert cookie["secure"] is True and cookie["httponly"] is True


def tampered(value: str) -> list[str]:
    """Variants of a signed cookie value an attacker could send back."""
    payload, _, signature = value.rpartition(".")
    # The signature's first character: its last one carries padding bits in base64,
    # so changing it between neighbours (A, B) may leave the signature as it was.
    flip = "A" if signature[0] != "A" else "Q"
    return [
        f"{payload}.{flip}{signature[1:]}",
        payload + ".",  # no signature
        payload,  # no signature at all
        value + "x",
        value.replace(".", "", 1),
        ".".join(reversed(value.split("."))),
    ]


async def test_a_tampered_session_cookie_is_refused(app: tarry.App) -> None:
    async with asgi_client(app, token=TOKEN) as client:
        csrf = await logged_in(client)
        good = client.cookies[COOKIE]
        assert (await client.get("/")).status_code == 200
        for value in tampered(good):
            client.cookies.set(COOKIE, value)
            page = await client.get("/")
            assert page.status_code == 303, value  # back to the login page
            assert page.headers["location"].startswith("/login")
            client.cookies.set(COOKIE, value)
            post = await client.post("/workflows/start", data={"csrf": csrf, "workflow": "quick"})
            assert post.status_code == 403, value
        client.cookies.set(COOKIE, good)
        assert (await client.get("/")).status_code == 200
    assert [r.id for r in (await app.list_runs()).items] == ["parked"]


async def test_a_cookie_signed_for_another_token_is_refused(app: tarry.App) -> None:
    async with asgi_client(app, token="another-token") as elsewhere:
        login = await elsewhere.get("/login")
        await elsewhere.post(
            "/login", data={"csrf": csrf_of(login.text), "token": "another-token", "next": "/"}
        )
        foreign = elsewhere.cookies[COOKIE]
        assert (await elsewhere.get("/")).status_code == 200
    async with asgi_client(app, token=TOKEN) as client:
        client.cookies.set(COOKIE, foreign)
        assert (await client.get("/")).status_code == 303


async def test_a_self_made_authenticated_cookie_is_refused(app: tarry.App) -> None:
    from itsdangerous import URLSafeTimedSerializer

    forged = URLSafeTimedSerializer("guessed-key", salt="tarry-dashboard").dumps(
        {"csrf": "c", "auth": True}
    )
    async with asgi_client(app, token=TOKEN) as client:
        client.cookies.set(COOKIE, forged)
        assert (await client.get("/")).status_code == 303
        response = await client.post("/workflows/start", data={"csrf": "c", "workflow": "quick"})
        assert response.status_code == 403
    assert [r.id for r in (await app.list_runs()).items] == ["parked"]


async def test_a_wrong_login_token_gets_no_session(client: httpx.AsyncClient) -> None:
    login = await client.get("/login")
    csrf = csrf_of(login.text)
    wrong = f"{TOKEN[:-1]}{chr(ord(TOKEN[-1]) + 1)}"
    # (the field is stripped, so a pasted token with a trailing newline still works)
    for token in ("", wrong, TOKEN[:-1], f" {TOKEN}x", TOKEN.upper()):
        response = await client.post("/login", data={"csrf": csrf, "token": token, "next": "/"})
        assert response.status_code == 401, token
        assert (await client.get("/")).status_code == 303


async def test_login_redirects_only_to_this_site(client: httpx.AsyncClient) -> None:
    login = await client.get("/login")
    csrf = csrf_of(login.text)
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)", "evil"):
        response = await client.post("/login", data={"csrf": csrf, "token": TOKEN, "next": target})
        assert response.status_code == 303
        assert response.headers["location"] == "/", target
        await client.post("/logout", data={"csrf": csrf_of((await client.get("/workflows")).text)})
        login = await client.get("/login")
        csrf = csrf_of(login.text)


# -- tarry serve on a public address -------------------------------------------------------


@pytest.mark.slow
def test_serve_on_a_public_address_needs_a_token(sqlite_url: str, tmp_path: Path) -> None:
    from cli.conftest import TARGET, Tarry, free_port, read_line

    tarry_cli = Tarry(sqlite_url, tmp_path)
    try:
        for args, env in (
            (("--host", "0.0.0.0"), {}),
            (("--host", "::"), {}),
            (("--host", "0.0.0.0", "--token", ""), {}),
            (("--host", "0.0.0.0"), {"TARRY_API_TOKEN": ""}),
        ):
            done = tarry_cli("serve", TARGET, *args, "--port", "0", env=env)
            assert done.returncode == 2, (args, env, done.stdout, done.stderr)
            assert "refusing to listen" in done.stderr and "without a token" in done.stderr
            assert done.stdout == ""

        for env, extra in (({}, ("--token", TOKEN)), ({"TARRY_API_TOKEN": TOKEN}, ())):
            port = free_port()
            proc = tarry_cli.spawn(
                "serve", TARGET, "--host", "0.0.0.0", "--port", str(port), *extra, env=env
            )
            line = read_line(proc, "dashboard at")
            assert f"http://0.0.0.0:{port}/" in line and "token required" in line
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                give_up = time.monotonic() + 20
                while True:
                    try:
                        if http.get("/api/v1/openapi.json").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < give_up, "the server did not come up"
                    time.sleep(0.1)
                assert http.get("/api/v1/workflows").status_code == 401
                near = {"authorization": f"Bearer {TOKEN[:-1]}x"}
                assert http.get("/api/v1/workflows", headers=near).status_code == 401
                good = {"authorization": f"Bearer {TOKEN}"}
                assert http.get("/api/v1/workflows", headers=good).status_code == 200
                assert http.get("/").status_code == 303
            proc.terminate()
            assert proc.wait(15) == 0
    finally:
        tarry_cli.stop()
