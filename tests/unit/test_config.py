from __future__ import annotations

import sqlite3

import pytest

import tarry
from tarry.app import mask_url


def test_duplicate_workflow_id(sqlite_url) -> None:
    app = tarry.App(sqlite_url)

    @app.workflow("a")
    async def a(ctx, step): ...

    with pytest.raises(tarry.ConfigError, match="'a' is already registered"):
        app.workflow("a")


def test_bad_app_options_name_the_value(sqlite_url) -> None:
    with pytest.raises(ValueError, match="'soon'"):
        tarry.App(sqlite_url, lease="soon")
    with pytest.raises(tarry.ConfigError, match="retries"):
        tarry.App(sqlite_url).workflow("x", retries=-1)
    with pytest.raises(tarry.ConfigError, match="''"):
        tarry.App(sqlite_url).workflow("")


def test_unknown_scheme_masks_the_password() -> None:
    with pytest.raises(tarry.ConfigError) as info:
        tarry.App("mysql://root:hunter2@db/x")
    assert "hunter2" not in str(info.value) and "root:***@db" in str(info.value)
    assert mask_url("postgresql://u:p@h/db") == "postgresql://u:***@h/db"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"


def test_database_falls_back_to_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TARRY_DATABASE_URL", f"sqlite:///{tmp_path}/env.db")
    assert tarry.App().database == f"sqlite:///{tmp_path}/env.db"
    monkeypatch.delenv("TARRY_DATABASE_URL")
    assert tarry.App().database == "sqlite:///./.tarry/tarry.db"


def test_unwritable_sqlite_path_is_a_config_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    app = tarry.App(f"sqlite:///{blocker}/sub/t.db")
    with pytest.raises(tarry.ConfigError, match="cannot open SQLite database"):
        app.start_sync("x")


def test_newer_schema_is_refused_and_left_untouched(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    app = tarry.App(url)
    run_id = app.start_sync("anything", {"keep": True})
    app.close_sync()
    with sqlite3.connect(tmp_path / "t.db") as conn:
        conn.execute("UPDATE tarry_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(tarry.SchemaTooNew, match="999"):
        tarry.App(url).get_run_sync(run_id)
    with sqlite3.connect(tmp_path / "t.db") as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)
        assert conn.execute("SELECT value FROM tarry_meta").fetchone() == ("999",)
