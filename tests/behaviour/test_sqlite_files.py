"""The SQLite file under the store: not tarry's, not a database, read-only, or gone."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import tarry
from tarry.errors import ConfigError, StoreError


async def test_a_database_of_someone_elses_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    before = path.read_bytes()
    app = tarry.App(f"sqlite:///{path}")
    with pytest.raises(ConfigError, match=r"is not a tarry store: it holds other tables \(users\)"):
        await app.list_runs()
    await app.close()
    assert path.read_bytes() == before


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 200)
    app = tarry.App(f"sqlite:///{path}")
    with pytest.raises(ConfigError, match="file is not a database"):
        await app.start("w")
    await app.close()


async def test_a_current_database_opens_for_reading_without_a_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    app = tarry.App(url)
    run_id = await app.start("w")
    await app.close()
    # Another connection holds the write lock (as a read-only file would refuse
    # one): opening a current store and reading it needs no write, so no wait.
    with sqlite3.connect(tmp_path / "t.db", isolation_level=None) as writer:
        writer.execute("BEGIN IMMEDIATE")
        again = tarry.App(url)
        started = time.monotonic()
        assert [r.id for r in (await again.list_runs()).items] == [run_id]
        assert time.monotonic() - started < 5
        writer.execute("ROLLBACK")
        await again.close()


def test_the_cli_reports_a_foreign_database_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    done = subprocess.run(
        [sys.executable, "-m", "tarry.cli", "runs", "--database", f"sqlite:///{path}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert done.returncode == 1, done.stderr
    assert "is not a tarry store" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


async def test_a_database_deleted_under_a_running_process_stops_its_store(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gone.db"
    app = tarry.App(f"sqlite:///{path}")
    await app.start("w")
    os.remove(path)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.remove(f"{path}{suffix}")
    # The store notices at its next look at the file (its poller's interval).
    for _ in range(200):
        try:
            await app.start("w")
        except StoreError as exc:
            assert "was deleted or replaced while this process had it open" in str(exc)
            break
        await __import__("asyncio").sleep(0.01)
    else:
        raise AssertionError("the store went on writing to a deleted database")
    await app.close()
    # A new process on the same path gets a new, empty database: nothing was lost
    # silently into the old file meanwhile.
    fresh = tarry.App(f"sqlite:///{path}")
    assert (await fresh.list_runs()).items == []
    await fresh.close()


async def test_a_statement_sqlite_refuses_is_a_store_error_in_tarrys_words(
    tmp_path: Path,
) -> None:
    from tarry.store.sqlite import SQLiteStore

    store = SQLiteStore(f"sqlite:///{tmp_path}/t.db")
    await store.open()

    async def refused(tx: Any) -> Any:
        return await tx.select("INSERT INTO runs (id) VALUES (NULL)", {})

    try:
        refusal = r"SQLite transaction on .* failed: NOT NULL"
        with pytest.raises(StoreError, match=refusal) as raised:
            await store._transact(refused)
        assert not isinstance(raised.value, tarry.StoreUnavailable)
        assert not isinstance(raised.value, sqlite3.Error)
    finally:
        await store.close()
