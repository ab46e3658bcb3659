"""Database URLs as they may be shown to people."""

from __future__ import annotations


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user, colon, _password = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"
