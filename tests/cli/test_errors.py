"""What the ``tarry`` command says when something is wrong: one ``error:`` line and
one ``hint:`` line (or one JSON object under ``--json``), and the documented exit
code: 1 for an error tarry reports, 2 for bad usage. Read commands never create a
database."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import tarry
from conftest import POSTGRES_URL, drop_schema, postgres_skip_reason

from .conftest import TARGET, Tarry

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
HELLO = """\
import tarry

app = tarry.App()


@app.workflow("hello")
def hello(ctx, step):
    return step.run("greet", lambda: "hi")
"""

READS = (
    ("runs",),
    ("run", "r-1"),
    ("start", "hello"),
    ("signal", "approval:1"),
    ("send-event", "app/x"),
    ("message", "r-1", "note"),
    ("cancel", "r-1"),
    ("retry", "r-1"),
    ("fork", "r-1", "--from-step", "a"),
    ("purge", "--older-than", "1d"),
)


def one_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The error line of a command that failed with ``code``, checked to be short."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: "), done.stderr
    return done.stderr


def json_error(done: subprocess.CompletedProcess[str], code: int) -> dict[str, str]:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    error: dict[str, str] = json.loads(done.stdout)["error"]
    assert error["message"] and error["hint"], error
    return error


def test_read_commands_never_create_a_database(tarry: Tarry, tmp_path: Path) -> None:
    url = "sqlite:///typo/dir/tarry.db"
    for args in READS:
        said = one_error(tarry(*args, env={"TARRY_DATABASE_URL": url}), 1)
        assert f"no tarry database at {tmp_path}/typo/dir/tarry.db" in said, said
        assert f"relative to {tmp_path}" in said and "tarry init" in said
    assert not (tmp_path / "typo").exists()

    error = json_error(tarry("runs", "--json", env={"TARRY_DATABASE_URL": url}), 1)
    assert error["type"] == "NoSuchStore" and "typo/dir/tarry.db" in error["message"]
    assert not (tmp_path / "typo").exists()


def test_the_default_database_is_looked_for_in_the_current_directory(
    tarry: Tarry, tmp_path: Path
) -> None:
    done = tarry("runs", env={"TARRY_DATABASE_URL": ""})
    assert f"no tarry database at {tmp_path}/.tarry/tarry.db" in one_error(done, 1)
    assert not (tmp_path / ".tarry").exists()


def test_a_file_that_is_no_tarry_store_is_left_alone(tarry: Tarry, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER)")
    conn.close()
    (tmp_path / "empty.db").touch()
    for name in ("other.db", "empty.db"):
        done = tarry("signal", "k", "--database", f"sqlite:///{tmp_path}/{name}")
        assert "is not a tarry store: it holds" in one_error(done, 1)
    with sqlite3.connect(other) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]
    conn.close()
    assert tables == ["orders"]
    assert (tmp_path / "empty.db").stat().st_size == 0

    memory = tarry("runs", "--database", "sqlite:///:memory:")
    assert "starts empty" in one_error(memory, 1)


def test_a_postgres_database_without_tarry_schema_is_left_alone(tarry: Tarry) -> None:
    reason = postgres_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = f"{POSTGRES_URL}?schema={schema}"
    try:
        for args in (("runs",), ("start", "hello"), ("signal", "k")):
            said = one_error(tarry(*args, "--database", url), 1)
            assert f"has no tarry schema '{schema}'" in said and "tarry init" in said
        with psycopg.connect(POSTGRES_URL) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
        assert found is None

        made = tarry("init", "--database", url)
        assert made.returncode == 0, made.stderr
        assert tarry.json("runs", "--database", url) == {"items": [], "next_cursor": None}
        unknown = tarry("start", "hello", "--database", url)
        assert "WorkflowNotFound" in one_error(unknown, 1)
    finally:
        drop_schema(schema)


def test_init_creates_the_store_and_records_workflows(tarry: Tarry, tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(HELLO)
    url = f"sqlite:///{tmp_path}/made/tarry.db"
    made = tarry.json("init", "hello.py", "--database", url)
    assert made == {"database": url, "workflows": ["hello"]}
    assert (tmp_path / "made" / "tarry.db").is_file()

    run_id = tarry.json("start", "hello", "--database", url)["run_id"]
    assert tarry.json("run", run_id, "--database", url)["status"] == "queued"

    nope = tarry("start", "nope", "--database", url)
    said = one_error(nope, 1)
    assert "WorkflowNotFound: no workflow 'nope' was ever registered" in said
    assert "known: hello" in said
    error = json_error(tarry("start", "nope", "--database", url, "--json"), 1)
    assert error["type"] == "WorkflowNotFound"
    listed = tarry.json("runs", "--database", url)["items"]
    assert [r["workflow"] for r in listed] == ["hello"]  # nothing queued for "nope"


def test_check_reads_without_creating(tarry: Tarry, tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(HELLO)
    done = tarry("check", "hello.py", "--database", f"sqlite:///{tmp_path}/none.db")
    assert "no tarry database" in one_error(done, 1)
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("import tarry\nimport no_such_package_here\napp = tarry.App()\n", "line 2"),
        ("import tarry\n\napp = tarry.App(\n", "line 3"),
        ("import tarry\napp = tarry.App()\nraise RuntimeError('boom')\n", "line 3"),
    ],
    ids=["missing-import", "syntax", "raises"],
)
def test_a_target_that_does_not_import_is_bad_usage(
    tarry: Tarry, tmp_path: Path, source: str, shown: str
) -> None:
    (tmp_path / "broken.py").write_text(source)
    # Every command that loads a TARGET shares the loading; one case goes through each.
    commands = ("worker", "check", "init", "serve") if "RuntimeError" in source else ("worker",)
    for command in commands:
        said = one_error(tarry(command, "broken.py"), 2)
        assert f"{tmp_path}/broken.py, {shown}" in said and "cannot import" in said
    assert not (tmp_path / ".tarry").exists()


def test_a_target_module_that_does_not_exist(tarry: Tarry) -> None:
    said = one_error(tarry("worker", "no_such_module_here:app"), 2)
    assert "no module named 'no_such_module_here'" in said and "TARGET is" in said
    assert "no such file" in one_error(tarry("worker", "missing/app.py"), 2)


def test_a_busy_port_names_the_port_and_the_option(tarry: Tarry) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = one_error(tarry("serve", TARGET, "--port", str(port)), 1)
    assert f"port {port} on 127.0.0.1 is already in use" in said
    assert "--port" in said.splitlines()[1]


def test_usage_errors_and_version(tarry: Tarry) -> None:
    said = one_error(tarry("runs", "--bogus"), 2)
    assert "unknown option or argument: --bogus" in said and "tarry runs --help" in said
    error = json_error(tarry("runs", "--status", "nope", "--json"), 2)
    assert error["type"] == "UsageError" and "--status" in error["message"]

    shown = tarry("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"tarry {tarry_version()}"


def tarry_version() -> str:
    return tarry.__version__


def hiding(tmp_path: Path, modules: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``tarry ARGS`` as an install without ``modules`` runs it."""
    return subprocess.run(
        [sys.executable, str(HERE / "without_modules.py"), modules, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**Tarry("", tmp_path).env, "TARRY_DATABASE_URL": f"sqlite:///{tmp_path}/t.db"},
    )


def test_a_missing_extra_is_named(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(HELLO)
    server = "fastapi,uvicorn,jinja2,starlette,itsdangerous,multipart,python_multipart"
    for command in ("serve", "dev"):
        said = one_error(hiding(tmp_path, server, command, "hello.py"), 1)
        assert "ServerExtraMissing" in said and "pip install 'tarry[server]'" in said
    postgres = "postgresql://nobody@127.0.0.1:1/none"
    for args in (("runs", "--database", postgres), ("worker", "hello.py", "-d", postgres)):
        said = one_error(hiding(tmp_path, "psycopg,psycopg_pool", *args), 1)
        assert "PostgresExtraMissing" in said and "pip install 'tarry[postgres]'" in said

    # Without the server extra every other command runs: start, list and show a run.
    hidden = server
    assert hiding(tmp_path, hidden, "init", "hello.py").returncode == 0
    started = hiding(tmp_path, hidden, "start", "hello", "--json")
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    shown = hiding(tmp_path, hidden, "run", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "queued"
    assert run_id in hiding(tmp_path, hidden, "runs").stdout
