"""``tarry worker|serve|dev --log-level --log-format``: the lifecycle log of a real
worker process, as JSON lines on stderr, and refusals of bad values."""

from __future__ import annotations

import json
import urllib.request

import pytest

from .conftest import TARGET, Tarry, free_port, read_line

pytestmark = pytest.mark.slow


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_worker_logs_an_approval_run_as_json_lines(tarry: Tarry) -> None:
    proc = tarry.spawn("worker", TARGET, "--log-level", "info", "--log-format", "json")
    read_line(proc, "tarry: worker")
    run_id = tarry.json("start", "approval", "--payload", '{"order": "j1"}')["run_id"]
    tarry.wait_status(run_id, "waiting")
    tarry.json("signal", "approval:j1", "--data", '{"approved": true, "by": "cli"}')
    tarry.wait_status(run_id, "completed")
    tarry.stop()
    _, stderr = proc.communicate()
    mine = [line for line in _json_lines(stderr) if line.get("run_id") == run_id]
    assert [line["event"] for line in mine] == ["parked", "resumed", "completed"]
    for line in mine:
        assert line["workflow"] == "approval" and line["level"] == "info"
        assert line["logger"] == "tarry.runs" and "ts" in line and "attempt" in line
    assert mine[0]["wait"] == "signal 'approval:j1'" and mine[1]["by"] == "signal"


def test_a_bad_log_level_or_format_is_a_usage_error(tarry: Tarry) -> None:
    done = tarry("worker", TARGET, "--log-level", "loud")
    assert done.returncode == 2 and "unknown log level 'loud'" in done.stderr
    done = tarry("worker", TARGET, "--log-format", "xml")
    assert done.returncode == 2 and "unknown log format 'xml'" in done.stderr


def test_serve_does_not_access_log_the_dashboard_refreshes(tarry: Tarry) -> None:
    port = free_port()
    proc = tarry.spawn("serve", TARGET, "--port", str(port), "--log-level", "info")
    read_line(proc, "tarry: dashboard")
    base = f"http://127.0.0.1:{port}"
    run_id = tarry.json("start", "quick", "--payload", "[1]")["run_id"]
    for path in ("/?fragment=table", "/?fragment=counts", f"/runs/{run_id}?fragment=live"):
        urllib.request.urlopen(base + path, timeout=10).read()
    urllib.request.urlopen(f"{base}/api/v1/runs/{run_id}", timeout=10).read()
    tarry.stop()
    out, err = proc.communicate()
    logged = out + err
    assert f"/api/v1/runs/{run_id}" in logged  # the API is access-logged
    assert "fragment=" not in logged
