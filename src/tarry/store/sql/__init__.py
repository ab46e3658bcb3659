"""Named SQL blocks, one ``-- name: <query>`` header each (procrastinate's layout).

``queries.sql`` holds what both stores run; ``<dialect>.sql`` overrides a query
by name where the dialect's SQL differs, and adds its own. Every file is written
with ``:name`` parameters; PostgreSQL's are rewritten to psycopg's ``%(name)s``.
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Literal

Dialect = Literal["sqlite", "postgres"]

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def _blocks(filename: str) -> dict[str, str]:
    text = files(__package__).joinpath(filename).read_text("utf-8")
    parts = _HEADER.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def load_queries(dialect: Dialect) -> dict[str, str]:
    """Every named query of ``dialect``, in its driver's parameter style."""
    queries = {**_blocks("queries.sql"), **_blocks(f"{dialect}.sql")}
    if dialect == "postgres":
        return {name: _PARAM.sub(r"%(\1)s", sql) for name, sql in queries.items()}
    return queries


def to_dialect(dialect: Dialect, sql: str) -> str:
    """One statement written with ``:name`` parameters, in ``dialect``'s style."""
    return _PARAM.sub(r"%(\1)s", sql) if dialect == "postgres" else sql


def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with its ``:name`` parameters numbered (``?1``, ``?2``, a name reused
    keeps its number), and the names in that order. sqlite3 binds a tuple by
    position in C; a mapping costs a string built, hashed and looked up per
    parameter per statement, the larger part of binding a step's row."""
    names: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"?{names.setdefault(match.group(1), len(names) + 1)}"

    return _PARAM.sub(number, sql), tuple(names)


def load_migrations(dialect: Dialect) -> list[tuple[int, str]]:
    """``(version, sql)`` pairs, in order, from ``<dialect>/migrations/NNNN_*.sql``."""
    folder = files(__package__).joinpath(dialect, "migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text("utf-8")))
    return sorted(found)
