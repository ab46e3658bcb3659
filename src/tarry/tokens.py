"""Callback token links: their ids, their signatures and their URLs.

A token's link is ``{public_url}/api/v1/tokens/{id}?sig={signature}``. The id is
128 random bits; the signature is an HMAC-SHA256, keyed with a secret kept in the
store, over the id and the token's expiry, so a link cannot be made for another id
nor stretched past its deadline. The secret rotates (``app.rotate_token_secret``):
links signed with the secret before stay valid for a grace period, then fail.

The signature goes in the query rather than the path: the path names the token
(``/api/v1/tokens/{id}``, the same resource ``app.complete_token`` completes), and
the signature is a credential beside it, as in S3's presigned URLs; the OpenAPI
document lists it as a required parameter of both routes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from .ids import random_hex
from .store.token_records import TokenSecret

TOKEN_PATH = "/api/v1/tokens/"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
"""Where links point when neither ``App(public_url=)``, ``$TARRY_PUBLIC_URL`` nor
``tarry serve`` says otherwise: what ``tarry serve`` listens on by default."""


def new_token_id() -> str:
    """128 bits from the OS's generator, as 32 hex characters."""
    return random_hex(16)


def new_secret() -> str:
    """A fresh signing secret: 256 bits."""
    return secrets.token_hex(32)


def _message(token_id: str, expires_at: float | None) -> bytes:
    # Milliseconds: the expiry signed is the one the store gives back, as an integer
    # that survives any float formatting.
    expiry = "none" if expires_at is None else str(round(expires_at * 1000))
    return f"tarry-token\0{token_id}\0{expiry}".encode()


def sign(secret: str, token_id: str, expires_at: float | None) -> str:
    """The signature of a token's link: URL-safe base64 of an HMAC-SHA256."""
    digest = hmac.new(secret.encode(), _message(token_id, expires_at), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def current(found: Sequence[TokenSecret]) -> str:
    """The secret that signs new links (the one not rotated out)."""
    for secret in found:
        if secret.valid_until is None:
            return secret.value
    raise LookupError("the store holds no current token secret")


def signed(
    found: Sequence[TokenSecret],
    token_id: str,
    expires_at: float | None,
    signature: object,
    now: float,
) -> bool:
    """Whether ``signature`` is the token's, by the current secret or one rotated out
    whose grace period has not ended at ``now``."""
    if not isinstance(signature, str) or not signature or len(signature) > 128:
        return False
    given = signature.encode()
    ok = False
    for secret in found:
        if secret.valid_until is not None and secret.valid_until <= now:
            continue
        # Every valid secret is compared, so the time taken does not tell which one.
        ok |= hmac.compare_digest(given, sign(secret.value, token_id, expires_at).encode())
    return ok


def token_url(public_url: str, token_id: str, signature: str) -> str:
    return f"{public_url}{TOKEN_PATH}{token_id}?sig={signature}"


def check_public_url(value: object) -> str:
    """``value`` as the base of token links: an http(s) URL without query or fragment,
    its trailing "/" dropped; ``ValueError`` naming it otherwise."""
    if (
        not isinstance(value, str)
        or not value.startswith(("http://", "https://"))
        or "?" in value
        or "#" in value
        or any(ch.isspace() for ch in value)
        or len(value.split("://", 1)[1].strip("/")) == 0
    ):
        raise ValueError(
            f"public_url must be the http(s) URL people reach the server at, such as "
            f"https://flows.example.com, without query or fragment; got {value!r}"
        )
    return value.rstrip("/")
