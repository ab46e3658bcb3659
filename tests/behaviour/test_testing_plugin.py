"""The pytest plugin tarry installs: ``tarry_env`` in a user's own project.

Each test writes a small project to a temporary directory and runs pytest on
it in a fresh process, as a user's CI would, so the entry point is what loads
the plugin.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

WORKFLOWS = """
import tarry

app = tarry.App("sqlite:///:memory:")


@app.workflow("reminder")
def reminder(ctx, step):
    answer = step.wait_for_signal("ask", signal=f"answer:{ctx.run_id}", timeout="3d")
    if answer is None:
        return step.run("nudge", send_mail, ctx.payload["to"])
    return answer


def send_mail(to):
    raise RuntimeError("tests must not send mail")
"""

TESTS = """
import pytest
import tarry


def test_sync(tarry_env):
    nudge = tarry_env.mock_step("reminder", "nudge", return_value="mail-1")
    run_id = tarry_env.start_sync("reminder", {"to": "ada@example.com"})
    tarry_env.advance_sync("3d")
    assert tarry_env.result_sync(run_id) == "mail-1"
    assert nudge.call_count == 1


async def test_async(tarry_env):
    run_id = await tarry_env.start("reminder", {"to": "ada@example.com"})
    await tarry_env.advance("2d")
    await tarry_env.send_signal(f"answer:{run_id}", {"ok": True})
    assert await tarry_env.result(run_id) == {"ok": True}


def test_each_test_gets_a_fresh_environment(tarry_env):
    assert tarry_env.list_runs_sync().items == []
"""


def run_pytest(project: Path, ini: str) -> subprocess.CompletedProcess[str]:
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [tool.pytest.ini_options]
            asyncio_mode = "auto"
            asyncio_default_fixture_loop_scope = "function"
            pythonpath = ["."]
            {ini}
            """
        )
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_tarry_env_runs_sync_and_async_tests_for_the_configured_app(tmp_path: Path) -> None:
    (tmp_path / "myflows.py").write_text(WORKFLOWS)
    (tmp_path / "test_flows.py").write_text(TESTS)
    done = run_pytest(tmp_path, 'tarry_app = "myflows:app"')
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_a_tarry_app_fixture_names_the_app_instead(tmp_path: Path) -> None:
    (tmp_path / "myflows.py").write_text(WORKFLOWS)
    (tmp_path / "conftest.py").write_text(
        "import pytest\nimport myflows\n\n\n@pytest.fixture\ndef tarry_app():\n"
        "    return myflows.app\n"
    )
    (tmp_path / "test_flows.py").write_text(TESTS)
    done = run_pytest(tmp_path, "")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_without_an_app_the_fixture_says_how_to_name_one(tmp_path: Path) -> None:
    (tmp_path / "test_flows.py").write_text("def test_x(tarry_env):\n    pass\n")
    done = run_pytest(tmp_path, "")
    assert done.returncode != 0
    assert "define a fixture named `tarry_app`" in done.stdout + done.stderr
    done = run_pytest(tmp_path, 'tarry_app = "nosuchmodule:app"')
    assert "cannot import 'nosuchmodule'" in done.stdout + done.stderr
