from __future__ import annotations

import sqlite3

import pytest

import tarry
from tarry.app import mask_url
from tarry.clock import ManualClock, SystemClock
from tarry.settings import Settings


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


def test_options_are_parsed_once_into_settings(sqlite_url) -> None:
    app = tarry.App(sqlite_url, lease="2s", retry_base="10ms", event_dedupe="1h")
    assert app.settings == Settings(lease=2.0, retry_base=0.01, event_dedupe=3600.0)
    assert (app.lease, app.retry_base, app.event_dedupe) == (2.0, 0.01, 3600.0)
    assert app.settings == Settings.parse(lease="2s", retry_base="10ms", event_dedupe="1h")
    assert Settings.parse() == Settings()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lease": "0s"}, "lease must be positive, got '0s'"),
        ({"lease": "soon"}, "lease: invalid duration 'soon'"),
        ({"retry_cap": "5M"}, "retry_cap: invalid duration '5M'"),
        ({"max_output_bytes": 0}, "max_output_bytes must be a positive integer, got 0"),
        ({"max_steps": True}, "max_steps must be a positive integer, got True"),
        ({"retry_base": "1h", "retry_cap": "10m"}, "retry_cap '10m' is shorter than retry_base"),
    ],
)
def test_bad_settings_are_config_errors_naming_option_and_value(options, message) -> None:
    with pytest.raises(tarry.ConfigError) as info:
        Settings.parse(**options)
    assert message in str(info.value)


def test_the_retry_cap_is_ten_minutes_or_the_first_backoff_if_longer() -> None:
    assert Settings.parse().retry_cap == 600.0
    assert Settings.parse(retry_base="1h").retry_cap == 3600.0
    assert Settings.parse(retry_base="1h", retry_cap="1d").retry_cap == 86400.0


def test_the_clock_defaults_to_the_wall_and_can_be_given(sqlite_url) -> None:
    assert isinstance(tarry.App(sqlite_url).clock, SystemClock)
    clock = ManualClock(start=1000.0)
    assert tarry.App(sqlite_url, clock=clock).clock is clock


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
