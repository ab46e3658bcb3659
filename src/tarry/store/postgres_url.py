"""A PostgreSQL URL: tarry's ``?schema=`` taken out, the password masked in messages."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ..errors import ConfigError
from ..urls import mask_url

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_DEFAULT_SCHEMA = "tarry"


def masked(url: str) -> str:
    return mask_url(url)


def parse_url(url: str) -> tuple[str, str, str | None]:
    """Split ``postgresql://...?schema=NAME`` into (conninfo, schema, password).

    ``schema`` is tarry's, not libpq's, so it is removed before connecting."""
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError as exc:
        raise ConfigError(f"invalid PostgreSQL URL {masked(url)!r}: {exc}") from None
    schema = _DEFAULT_SCHEMA
    kept = []
    for name, value in query:
        if name == "schema":
            schema = value
        else:
            kept.append((name, value))
    if not _IDENTIFIER.match(schema):
        raise ConfigError(
            f"invalid schema {schema!r} in {masked(url)!r}: use letters, digits and "
            "underscores, starting with a letter or underscore (at most 63)"
        )
    conninfo = urlunsplit(parts._replace(query=urlencode(kept)))
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        message = str(exc)
        if parts.password:
            message = message.replace(parts.password, "***")
        raise ConfigError(f"invalid PostgreSQL URL {masked(url)!r}: {message}") from None
    password = params.get("password")
    return conninfo, schema, None if password is None else str(password)
