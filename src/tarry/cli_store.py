"""Whether the database a command names is a tarry store, read before it is opened.

Opening a store creates it (the SQLite file and its directories, or tarry's schema
in a PostgreSQL database), which only ``tarry worker``, ``serve``, ``dev`` and
``init`` should do. Every other command reads here first, without writing, and
refuses a database that is missing or holds no tarry schema, so a mistyped path,
a command run from another directory, or a URL naming someone else's database
says so instead of showing an empty store it just made. ``start`` also asks
whether the workflow was ever registered in the store (its ``workflows`` table,
written by every App that registers workflows, or a run of it).
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from .app import DEFAULT_DATABASE
from .errors import ConfigError, StoreUnavailable, WorkflowNotFound
from .store import POSTGRES_EXTRA, PostgresExtraMissing
from .urls import mask_url

# How a command names its store, for the hints.
CHOOSE = "--database URL or TARRY_DATABASE_URL"
CREATE = "`tarry init [TARGET]` or a worker (`tarry worker TARGET`) creates it"
SHOWN_WORKFLOWS = 20


class NoSuchStore(ConfigError):
    """The database a command reads is missing or holds no tarry schema."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def database_url(database: str | None) -> str:
    """The URL an ``App(database)`` would open."""
    return database or os.environ.get("TARRY_DATABASE_URL") or DEFAULT_DATABASE


def require_store(url: str, *, workflow: str | None = None) -> None:
    """Raise ``NoSuchStore`` unless ``url`` is an existing tarry store, and
    ``WorkflowNotFound`` if ``workflow`` is given and was never registered there."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        _sqlite(url, workflow)
    elif scheme in ("postgresql", "postgres"):
        _postgres(url, workflow)
    # Any other scheme: the App refuses it with the reason when it opens.


def _sqlite(url: str, workflow: str | None) -> None:
    from .store.sqlite import MEMORY, sqlite_path

    path = sqlite_path(url)
    if path == MEMORY:
        raise NoSuchStore(
            f"{url} is a database in this command's memory: it starts empty and is gone "
            "when the command ends",
            hint=f"give the file the workers use ({CHOOSE}), e.g. sqlite:///./.tarry/tarry.db",
        )
    where = Path(path).resolve()
    relative = "" if Path(path).is_absolute() else f", relative to {Path.cwd()}"
    if not where.exists():
        raise NoSuchStore(
            f"no tarry database at {where} ({url}{relative})",
            hint=f"check {CHOOSE} and the current directory; {CREATE}",
        )
    if not where.is_file():
        raise NoSuchStore(
            f"{where} ({url}) is not a file", hint=f"name the database file with {CHOOSE}"
        )
    try:
        with closing(sqlite3.connect(f"{where.as_uri()}?mode=ro", uri=True)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            if "tarry_meta" not in tables:
                holds = f"other tables ({', '.join(sorted(tables)[:5])})" if tables else "nothing"
                raise NoSuchStore(
                    f"{where} ({url}) is not a tarry store: it holds {holds} and no tarry schema",
                    hint=f"check {CHOOSE}; {CREATE} in a file of its own",
                )
            if workflow is not None:
                rows = _known(conn.execute, "?", workflow)
                _check_workflow(workflow, rows, url)
    except sqlite3.Error:
        # A file this probe cannot read (locked, not SQLite): the store, opening it,
        # reports the reason.
        return


def _known(execute: Any, mark: str, workflow: str, prefix: str = "") -> list[str] | None:
    """None when ``workflow`` is known, else the workflows that are (some of them)."""
    found = execute(
        f"SELECT 1 FROM {prefix}workflows WHERE id = {mark} "
        f"UNION ALL SELECT 1 FROM {prefix}runs WHERE workflow = {mark} LIMIT 1",
        (workflow, workflow),
    ).fetchone()
    if found is not None:
        return None
    rows = execute(
        f"SELECT id FROM {prefix}workflows ORDER BY id LIMIT {SHOWN_WORKFLOWS + 1}"
    ).fetchall()
    return [str(row[0]) for row in rows]


def _check_workflow(workflow: str, known: list[str] | None, url: str) -> None:
    if known is None:
        return
    listed = ", ".join(known[:SHOWN_WORKFLOWS]) + (", ..." if len(known) > SHOWN_WORKFLOWS else "")
    raise WorkflowNotFound(
        f"no workflow {workflow!r} was ever registered in {mask_url(url)}; "
        + (f"known: {listed}" if known else "it knows no workflows yet")
    )


def _postgres(url: str, workflow: str | None) -> None:
    try:
        import psycopg
        from psycopg import sql

        from .store.postgres_url import parse_url
    except ImportError as exc:
        raise PostgresExtraMissing(
            f"cannot use {mask_url(url)!r}: the PostgreSQL store needs psycopg, which "
            f"this install of tarry lacks ({exc}); {POSTGRES_EXTRA} brings it"
        ) from None
    conninfo, schema, password = parse_url(url)
    try:
        with psycopg.connect(conninfo, connect_timeout=10, autocommit=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_catalog.pg_class c "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = 'tarry_meta'",
                (schema,),
            ).fetchone()
            if found is None:
                raise NoSuchStore(
                    f"the PostgreSQL database {mask_url(url)} has no tarry schema {schema!r}",
                    hint=f"check {CHOOSE} (and ?schema=NAME); {CREATE}",
                )
            if workflow is not None:
                prefix = sql.Identifier(schema).as_string(conn) + "."

                def execute(query: str, params: Any = None) -> Any:
                    return conn.execute(query.encode(), params)

                _check_workflow(workflow, _known(execute, "%s", workflow, prefix), url)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if password:
            reason = reason.replace(password, "***")
        raise StoreUnavailable(f"cannot connect to {mask_url(url)}: {reason}") from None
