"""Fixtures for the PostgreSQL-only tests: a fresh schema per test, worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tarry.store.postgres import PostgresStore

POSTGRES_URL = os.environ.get("TARRY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
WORKER = Path(__file__).with_name("worker_main.py")


def _unavailable() -> str | None:
    try:
        import psycopg

        import tarry.store.postgres  # noqa: F401
    except ImportError as exc:
        return f"the PostgreSQL store cannot be imported: {exc}"
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"no PostgreSQL server at {POSTGRES_URL}: {exc}"
    return None


@pytest.fixture
def pg_url() -> Iterator[str]:
    reason = _unavailable()
    if reason is not None:
        pytest.skip(reason)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}schema={schema}"
    for _ in range(30):  # the server may still be coming back from a restart test
        try:
            with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            break
        except psycopg.OperationalError:
            import time

            time.sleep(1)


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one schema: two processes racing, each with its own connections."""
    from tarry.store.postgres import PostgresStore

    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


@pytest.fixture
def spawn_workers(tmp_path: Path) -> Iterator[Callable[..., list[subprocess.Popen[bytes]]]]:
    """Start worker processes running ``worker_main.py``; stop them at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(url: str, count: int, *extra: Any) -> list[subprocess.Popen[bytes]]:
        started = []
        for n in range(count):
            log = open(tmp_path / f"worker-{len(procs)}.log", "wb")  # noqa: SIM115
            proc = subprocess.Popen(
                [sys.executable, str(WORKER), url, str(tmp_path), *map(str, extra)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "TARRY_WORKER_INDEX": str(n)},
            )
            log.close()
            procs.append(proc)
            started.append(proc)
        return started

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def worker_logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("worker-*.log"))


def ledger(tmp_path: Path) -> list[tuple[str, str]]:
    """Every side effect any worker performed, as (tag, run id)."""
    entries = []
    for path in tmp_path.glob("ledger-*.txt"):
        for line in path.read_text().splitlines():
            tag, run_id = line.split(" ", 1)
            entries.append((tag, run_id))
    return entries
