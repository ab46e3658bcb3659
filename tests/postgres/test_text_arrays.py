"""The store binds arrays of strings (run ids, waiter ids, step keys) through its own
dumper (postgres_tx.TextArrayDumper): every string must reach the server as it was."""

from __future__ import annotations

import psycopg
import pytest

from tarry.store.postgres_tx import TextArray

HARD = ["plain", "", "NULL", "null", " spaced ", "a,b", "{braced}", 'say "hi"', "back\\slash",
        "\\\"", "tab\tnew\nline", "é 𝄞 中", "'quoted'", ",", '"', "\\"]  # fmt: skip


def _server(pg_url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(pg_url.split("?")[0])


@pytest.mark.parametrize("values", [HARD, [], ["one"], [str(n) for n in range(2000)]])
def test_each_string_reaches_the_server_as_it_was(pg_url: str, values: list[str]) -> None:
    with _server(pg_url) as conn:
        row = conn.execute("SELECT %s::text[]", (TextArray(values),)).fetchone()
    assert row is not None and row[0] == values


def test_the_statement_gives_the_type(pg_url: str) -> None:
    with _server(pg_url) as conn:
        row = conn.execute(
            "SELECT %s::bigint[], 'b' = ANY(%s)", (TextArray(["1", "22"]), TextArray(["a", "b"]))
        ).fetchone()
    assert row == ([1, 22], True)


def test_a_nul_is_refused_before_anything_is_sent(pg_url: str) -> None:
    with _server(pg_url) as conn, pytest.raises(psycopg.DataError, match="NUL"):
        conn.execute("SELECT %s::text[]", (TextArray(["ok", "bad\x00"]),))
