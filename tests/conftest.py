"""Shared fixtures: every behaviour test runs once per store.

``database_url`` is parametrised over SQLite (a fresh file per test) and
PostgreSQL (a fresh schema per test in the server named by
``TARRY_TEST_POSTGRES``, default ``postgresql://postgres@127.0.0.1:5432/test``).
The PostgreSQL half skips, with the reason, only where no server answers or the
driver is not installed; ``.ci/run`` makes sure the server is up.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tarry

POSTGRES_URL = os.environ.get("TARRY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_unavailable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]')"
    try:
        import tarry.store.postgres  # noqa: F401
    except ImportError as exc:
        return f"the PostgreSQL store is not importable: {exc}"
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"no PostgreSQL server at {POSTGRES_URL}: {exc}"
    return None


_PG_SKIP: list[str | None] = []


def postgres_skip_reason() -> str | None:
    if not _PG_SKIP:
        _PG_SKIP.append(_postgres_unavailable())
    return _PG_SKIP[0]


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/tarry.db"
        return
    reason = postgres_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}schema={schema}"
    drop_schema(schema)


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/tarry.db"


FAST = {"lease": "2s", "retry_base": "10ms", "retry_cap": "50ms"}


@pytest.fixture
def make_app(database_url: str) -> Iterator[Callable[..., tarry.App]]:
    """Build Apps on this test's database with short leases and backoffs."""
    apps: list[tarry.App] = []

    def make(**options: Any) -> tarry.App:
        app = tarry.App(database_url, **{**FAST, **options})
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close_sync()


@pytest.fixture
def app(make_app: Callable[..., tarry.App]) -> tarry.App:
    return make_app()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Show the chaos suite's counts in every run's summary, passed or failed."""
    lines = [
        value
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        for name, value in getattr(report, "user_properties", [])
        if name == "chaos"
    ]
    if lines:
        terminalreporter.section("chaos")
        for line in lines:
            terminalreporter.write_line(line)
