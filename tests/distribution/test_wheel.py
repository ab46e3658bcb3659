"""``pip install tarry`` is the library and the CLI: the wheel, installed into a
fresh venv without extras, imports, runs a workflow with a worker and drives it
from the CLI, and has none of the server's or PostgreSQL's packages; the commands
that need them say which extra to install."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("fastapi", "starlette", "uvicorn", "jinja2", "itsdangerous", "python-multipart")
POSTGRES_ONLY = ("psycopg", "psycopg-pool", "psycopg-binary")

WORKFLOW = """\
import asyncio
import importlib.util
import sys

import tarry
import tarry.cli
import tarry.testing
import tarry.worker

for name in ("fastapi", "starlette", "uvicorn", "jinja2", "multipart", "python_multipart",
             "itsdangerous", "psycopg"):
    assert importlib.util.find_spec(name) is None, f"{name} is installed"

app = tarry.App(sys.argv[1])


@app.workflow("double")
def double(ctx, step):
    doubled = step.run("double", lambda n: n * 2, ctx.payload["n"])
    note = step.wait_for_message("note", timeout="1h")
    return {"doubled": doubled, "note": note.data}


async def main():
    async with app.worker():
        run_id = await app.start("double", {"n": 21}, run_id="r-1")
        while (await app.get_run(run_id)).status != "waiting":
            await asyncio.sleep(0.02)
        await app.send_message(run_id, "note", {"by": "test"})
        print(await app.result(run_id, timeout=30))


asyncio.run(main())
"""

TARGET = """\
import tarry

app = tarry.App()


@app.workflow("hello")
def hello(ctx, step):
    return step.run("greet", lambda: "hi")
"""


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(into: Path) -> Path:
    """The wheel of this tree: with the dev venv's hatchling when it has it, else in
    pip's build environment."""
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run(*pip, "wheel", "--quiet", "--no-deps", *isolation, "-w", into, ROOT, cwd=into)
    (wheel,) = into.glob("tarry-*.whl")
    return wheel


def test_the_library_installs_and_runs_without_extras(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python, tarry_command = venv / "bin" / "python", venv / "bin" / "tarry"
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    run(*pip, "install", "--quiet", wheel, cwd=tmp_path)

    listed = json.loads(run(*pip, "list", "--format", "json", cwd=tmp_path))
    installed = {p["name"].lower() for p in listed}
    assert "tarry" in installed
    assert not installed & {*SERVER_ONLY, *POSTGRES_ONLY}, sorted(installed)

    url = f"sqlite:///{tmp_path}/store.db"
    (tmp_path / "workflow.py").write_text(WORKFLOW)
    output = run(python, "workflow.py", url, cwd=tmp_path)
    assert output.strip() == "{'doubled': 42, 'note': {'by': 'test'}}"

    env = {"TARRY_DATABASE_URL": url, "NO_COLOR": "1"}
    assert run(tarry_command, "--version", cwd=tmp_path).startswith("tarry ")
    shown = json.loads(run(tarry_command, "run", "r-1", "--json", cwd=tmp_path, env=env))
    assert shown["status"] == "completed" and [s["id"] for s in shown["steps"]] == [
        "double",
        "note",
    ]
    assert "r-1" in run(tarry_command, "runs", cwd=tmp_path, env=env)

    (tmp_path / "hello.py").write_text(TARGET)
    serve = subprocess.run(
        [tarry_command, "serve", "hello.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert serve.returncode == 1, serve.stderr
    assert "pip install 'tarry[server]'" in serve.stderr.splitlines()[0]
    postgres = subprocess.run(
        [tarry_command, "runs", "--database", "postgresql://nobody@127.0.0.1:1/none"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert postgres.returncode == 1, postgres.stderr
    assert "pip install 'tarry[postgres]'" in postgres.stderr.splitlines()[0]

    assets = venv.glob("lib/python3*/site-packages/tarry/server/static/swagger-ui/*")
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "LICENSE"} <= {p.name for p in assets}
