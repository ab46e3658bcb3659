"""Who may call: a bearer token for the API, a signed session cookie for the dashboard.

The API compares the ``Authorization: Bearer`` token in constant time. The
dashboard asks for the same token once and keeps a signed, HttpOnly,
SameSite=Lax cookie; the cookie also carries the CSRF token that every form
posts back.

The signing key outlives the process, so that a restarted server (``tarry dev``
reloading, a deploy) still accepts the cookies and forms of the tabs left open:
it is ``$TARRY_DASHBOARD_KEY`` when set (servers sharing no database), else a
random key the first server stores in the database and every later one reads.
With a token the key is mixed with it, so sessions end when the token changes.
CSRF protection applies with or without a token: a page elsewhere must not drive
a dashboard on localhost.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import Response

from ..app import App

COOKIE = "tarry_session"
SESSION_MAX_AGE = 12 * 3600
KEY_ENV = "TARRY_DASHBOARD_KEY"
KEY_NAME = "dashboard-session"
"""The name the signing key is stored under in the database."""

bearer = HTTPBearer(auto_error=False, description="the server's API token (TARRY_API_TOKEN)")


def tokens_equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass
class Session:
    csrf: str
    authenticated: bool
    new: bool = False
    changed: bool = field(default=False)


class Guard:
    """The server's token (or None: open) and what follows from it."""

    def __init__(self, token: str | None) -> None:
        self.token = token or None
        self._signer: URLSafeTimedSerializer | None = None

    async def ready(self, app: App) -> None:
        """Load the signing key once: from the environment, else from the store."""
        if self._signer is not None:
            return
        base = os.environ.get(KEY_ENV) or None
        if base is None:
            store = await app._open()
            base = await store.dashboard_key(KEY_NAME, secrets.token_hex(32))
        mixed = b"tarry-session\0" + base.encode() + b"\0" + (self.token or "").encode()
        self._signer = URLSafeTimedSerializer(hashlib.sha256(mixed).hexdigest(), "tarry-dashboard")

    @property
    def signer(self) -> URLSafeTimedSerializer:
        if self._signer is None:
            raise RuntimeError("Guard.ready() must be awaited before the dashboard signs")
        return self._signer

    # -- API ---------------------------------------------------------------------------

    def check_bearer(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        if self.token is None:
            return
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(401, "this server needs Authorization: Bearer <token>", challenge)
        if not tokens_equal(credentials.credentials, self.token):
            raise HTTPException(401, "the bearer token is not valid", challenge)

    # -- dashboard -----------------------------------------------------------------------

    def session(self, request: Request) -> Session:
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                data: Any = self.signer.loads(raw, max_age=SESSION_MAX_AGE)
            except BadSignature:  # expired, or signed with another key
                data = None
            if isinstance(data, dict) and isinstance(data.get("csrf"), str):
                return Session(data["csrf"], bool(data.get("auth")))
        return Session(secrets.token_urlsafe(24), False, new=True)

    def allowed(self, session: Session) -> bool:
        return self.token is None or session.authenticated

    def login(self, session: Session, given: str) -> bool:
        if self.token is None or not tokens_equal(given, self.token):
            return False
        session.authenticated = True
        session.csrf = secrets.token_urlsafe(24)  # a new session after login
        session.changed = True
        return True

    def logout(self, session: Session) -> None:
        session.authenticated = False
        session.csrf = secrets.token_urlsafe(24)
        session.changed = True

    def csrf_ok(self, session: Session, given: object) -> bool:
        """Whether a form's CSRF token is this session's (never for a new session)."""
        return not session.new and isinstance(given, str) and tokens_equal(given, session.csrf)

    def store(self, session: Session, request: Request, response: Response) -> None:
        """Set the cookie on ``response`` if the session is new or changed."""
        if not (session.new or session.changed):
            return
        value = self.signer.dumps({"csrf": session.csrf, "auth": session.authenticated})
        response.set_cookie(
            COOKIE,
            value,
            max_age=SESSION_MAX_AGE,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
