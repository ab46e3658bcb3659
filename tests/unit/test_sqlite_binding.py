"""How the embedded store binds its named queries: by position, with sqlite3's
adapter probing answered at once for NULL and BLOB values."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from tarry.store import open_store
from tarry.store.sql import positional
from tarry.store.sqlite import STATEMENTS


class _AnyParams(dict[str, str]):
    """Every parameter a statement names, bound to an empty JSON array."""

    def __missing__(self, key: str) -> str:
        return "[]"


def test_named_parameters_are_numbered_once_each_in_order() -> None:
    sql, names = positional("UPDATE runs SET a = :now, b = :id WHERE c < :now AND d = :id")
    assert names == ("now", "id")
    assert sql == "UPDATE runs SET a = ?1, b = ?2 WHERE c < ?1 AND d = ?2"
    assert positional("SELECT 1") == ("SELECT 1", ())


def test_every_statement_is_given_as_many_values_as_it_binds(tmp_path: Path) -> None:
    path = tmp_path / "binding.db"
    store = open_store(f"sqlite:///{path}")
    asyncio.run(store.open())
    asyncio.run(store.close())
    with sqlite3.connect(path) as conn:
        conn.create_function("tarry_index_value", 1, lambda value: value, deterministic=True)
        for name, statements in STATEMENTS.items():
            for sql, values in statements:
                assert ":" + "now" not in sql, name  # nothing left named
                # Compiled, not run: sqlite3 refuses a tuple of the wrong length.
                conn.execute(f"EXPLAIN {sql}", values(_AnyParams()))


def test_null_and_blob_values_are_bound_as_they_are() -> None:
    conn = sqlite3.connect(":memory:")
    found = conn.execute("SELECT ?1, typeof(?1), ?2, typeof(?2)", (None, b"\x00ab")).fetchone()
    assert found == (None, "null", b"\x00ab", "blob")
    assert sqlite3.adapters[(bytes, sqlite3.PrepareProtocol)] is bytes
