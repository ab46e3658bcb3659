"""The stores: the protocol (``base``), the logic written once (``core``) and one
adapter per database. ``open_store`` picks the adapter from a URL."""

from __future__ import annotations

from ..clock import Clock
from ..errors import ConfigError
from ..urls import mask_url
from .base import Store

POSTGRES_EXTRA = "pip install 'tarry[postgres]'"


class PostgresExtraMissing(ConfigError):
    """A postgresql:// URL in an install without ``tarry[postgres]`` (psycopg)."""

    hint = f"install the postgres extra: {POSTGRES_EXTRA}"


def open_store(url: str, *, clock: Clock | None = None) -> Store:
    """The store for ``url`` (``sqlite:///...`` or ``postgresql://...``), not yet open."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        return SQLiteStore(url, clock=clock)
    if scheme in ("postgresql", "postgres"):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise PostgresExtraMissing(
                f"cannot use {mask_url(url)!r}: the PostgreSQL store needs psycopg, "
                f"which this install of tarry lacks ({exc}); {POSTGRES_EXTRA} brings it"
            ) from None
        return PostgresStore(url, clock=clock)
    raise ConfigError(
        f"unknown database URL scheme in {mask_url(url)!r}: use sqlite:///path/to/file.db "
        "or postgresql://user@host/db"
    )
