"""Shared helpers for the bench/dbos_*.py scripts (run with the DBOS venv, not .venv).

DBOS is a bench-only dependency: these scripts import ``dbos`` and are run with
``/tmp/dbosvenv/bin/python``; ``bench/all.py`` starts them as subprocesses. Every
script configures DBOS with its defaults apart from the system database URL (a
SQLite file in a temp dir, or a fresh PostgreSQL database dropped afterwards) and
the admin server (off, so parallel processes do not fight over port 3001).

With ``--json`` a script prints exactly one JSON object as the last line of stdout.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine_info, write_json


def dbos_version() -> str:
    from importlib.metadata import version

    return version("dbos")


def config(url: str) -> Any:
    """A DBOS config: defaults, the given system database, no admin server."""
    return {"name": "tarry-bench", "system_database_url": url, "run_admin_server": False}


def launch(url: str) -> None:
    from dbos import DBOS

    DBOS(config=config(url))
    DBOS.launch()


@contextmanager
def temp_sqlite() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="dbos-bench-") as tmp:
        yield f"sqlite:///{os.path.join(tmp, 'dbos.sqlite')}"


@contextmanager
def fresh_postgres(base_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database next to ``base_url``'s; dropped (FORCE) afterwards."""
    import psycopg

    base, _, _query = base_url.partition("?")
    server, _, _db = base.rpartition("/")
    name = f"dbos_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def system_database(database: str | None) -> Iterator[str]:
    """``database`` None -> a temp SQLite file; else a fresh database on that server."""
    if database:
        with fresh_postgres(database) as url:
            yield url
    else:
        with temp_sqlite() as url:
            yield url


def count_workflows(url: str, status: str = "SUCCESS") -> int:
    """Workflows in ``status`` in DBOS's system tables, through a separate connection."""
    sql = "SELECT count(*) FROM {t} WHERE status = ?"
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30.0)
        try:
            return int(conn.execute(sql.format(t="workflow_status"), (status,)).fetchone()[0])
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url) as pg:
        row = pg.execute(sql.format(t="dbos.workflow_status").replace("?", "%s"), (status,))
        found = row.fetchone()
    return int(found[0]) if found else 0


def finish(name: str, as_json: bool, payload: dict[str, Any]) -> None:
    """Write ``bench/results/<name>.json`` and, with ``--json``, print it as one line."""
    payload = {"benchmark": name, "dbos_version": dbos_version(), **payload,
               "machine": machine_info()}  # fmt: skip
    path = write_json(name, payload)
    if as_json:
        print(json.dumps(payload), flush=True)
    else:
        print(f"\nwrote {path}")
