"""``tarry check`` and ``tarry runs --version`` from the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import tarry
from tarry.testing import Environment

V1 = """
import tarry

app = tarry.App(version="{version}")


@app.workflow("order")
async def order(ctx, step):
    await step.run("charge", lambda: "charged")
    return await step.wait_for_signal("approval", signal=f"{key}:{{ctx.run_id}}", timeout="7d")
"""


async def park(database_url: str) -> str:
    app = tarry.App("sqlite:///:memory:", version="v1")

    @app.workflow("order")
    async def order(ctx, step):
        await step.run("charge", lambda: "charged")
        return await step.wait_for_signal("approval", signal=f"approve:{ctx.run_id}", timeout="7d")

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("order")
        await env.run_until_idle()
    return run_id


def target(tmp_path: Path, name: str, *, version: str, key: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(V1.format(version=version, key=key))
    return str(path)


async def test_check_passes_code_that_keeps_the_wait(tarry, sqlite_url, tmp_path) -> None:
    run_id = await park(sqlite_url)
    done = tarry("check", target(tmp_path, "same", version="v2", key="approve"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checked 1 waiting runs: 0 would break, 0 warnings" in done.stdout
    assert "order / v1: 1, 0, 0, 0" in done.stdout
    report = json.loads(tarry("check", target(tmp_path, "same2", version="v2", key="approve"),
                              "--json").stdout)  # fmt: skip
    assert report["passed"] is True
    assert report["runs"][0] == {
        "run_id": run_id, "workflow": "order", "version": "v1", "verdict": "ok",
        "continues_at": "approval", "problems": [], "traceback": None,
    }  # fmt: skip


async def test_check_fails_code_that_changes_the_wait(tarry, sqlite_url, tmp_path) -> None:
    run_id = await park(sqlite_url)
    done = tarry("check", target(tmp_path, "changed", version="v2", key="approval"))
    assert done.returncode == 1
    assert f"ERROR    {run_id}  order (version v1)" in done.stdout
    assert f"waited on signal 'approve:{run_id}'" in done.stdout
    assert "1 would break" in done.stdout
    assert tarry("run", run_id, "--json").returncode == 0  # nothing was changed
    assert json.loads(tarry("run", run_id, "--json").stdout)["status"] == "waiting"


async def test_unknown_workflows_and_filters(tarry, sqlite_url, tmp_path) -> None:
    await park(sqlite_url)
    other = tmp_path / "other.py"
    other.write_text("import tarry\n\napp = tarry.App()\n\n\n@app.workflow('x')\n"
                     "async def x(ctx, step):\n    return 1\n")  # fmt: skip
    done = tarry("check", str(other))
    assert done.returncode == 1 and "UNKNOWN" in done.stdout
    assert "unknown workflow 'order'" in done.stdout
    done = tarry("check", str(other), "--workflow", "x")
    assert done.returncode == 0 and "checked 0 waiting runs" in done.stdout
    assert tarry("check", str(other), "--workflow", "").returncode != 0


async def test_runs_lists_versions_and_filters_by_them(tarry, sqlite_url) -> None:
    run_id = await park(sqlite_url)
    listing = tarry("runs")
    assert "v1" in listing.stdout
    assert [r["id"] for r in tarry.json("runs", "--version", "v1")["items"]] == [run_id]
    assert tarry.json("runs", "--version", "v9")["items"] == []
