"""The ``tarry`` command end to end: each subcommand, --json, and its exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from .conftest import TARGET, Tarry, read_line

pytestmark = pytest.mark.slow


def test_start_signal_list_show(tarry: Tarry, worker: subprocess.Popen[str]) -> None:
    run_id = tarry.json("start", "approval", "--payload", '{"order": "c1"}')["run_id"]
    parked = tarry.wait_status(run_id, "waiting")
    assert parked["waiting_for"]["key"] == "approval:c1"

    listed = tarry.json("runs", "--status", "waiting")
    assert [r["id"] for r in listed["items"]] == [run_id]
    assert tarry.json("runs", "--workflow", "quick")["items"] == []

    table = tarry("runs")
    assert table.returncode == 0 and run_id in table.stdout and "approval:c1" in table.stdout

    sent = tarry.json("signal", "approval:c1", "--data", '{"approved": true, "by": "cli"}')
    assert sent == {"status": "delivered", "run_id": run_id}
    done = tarry.wait_status(run_id, "completed")
    assert done["output"] == {"approved_by": "cli"}
    assert [s["id"] for s in done["steps"]] == ["prepare", "wait-approval"]

    shown = tarry("run", run_id)
    assert shown.returncode == 0
    assert "completed" in shown.stdout and "wait-approval" in shown.stdout

    human = tarry("start", "quick", "--payload", "[1, 2]")
    assert human.returncode == 0 and len(human.stdout.strip()) >= 16
    assert tarry.wait_status(human.stdout.strip(), "completed")["output"] == [1, 2]


def test_message_event_and_cancel(tarry: Tarry, worker: subprocess.Popen[str]) -> None:
    inbox = tarry.json("start", "inbox")["run_id"]
    tarry.wait_status(inbox, "waiting")
    assert tarry.json("message", inbox, "decision", "--data", '{"ok": 1}') == {
        "run_id": inbox,
        "name": "decision",
    }
    assert tarry.wait_status(inbox, "completed")["output"] == {"ok": 1}

    sent = tarry.json("send-event", "test/quick", "--data", '{"e": 1}', "--id", "e-1")
    assert len(sent["started"]) == 1
    assert tarry.wait_status(sent["started"][0], "completed")["output"] == {"e": 1}
    assert tarry.json("send-event", "test/quick", "--id", "e-1")["started"] == []

    parked = tarry.json("start", "approval", "--payload", '{"order": "c2"}')["run_id"]
    tarry.wait_status(parked, "waiting")
    cancelled = tarry.json("cancel", parked, "--reason", "no stock")
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"]["message"] == "no stock"
    buffered = tarry("signal", "approval:c2")
    assert buffered.returncode == 0 and "buffered" in buffered.stdout


def test_reported_errors_exit_1(tarry: Tarry) -> None:
    assert tarry("init", TARGET).returncode == 0
    for args in (
        ("run", "missing"),
        ("cancel", "missing"),
        ("message", "missing", "note"),
        ("signal", "nobody", "--strict"),
        ("signal", "k", "--data", "null"),
    ):
        done = tarry(*args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert "error:" in done.stderr and done.stdout == ""
    assert "RunNotFound" in tarry("run", "missing").stderr
    assert "SignalNotFound" in tarry("signal", "nobody", "--strict").stderr
    bad_url = tarry("runs", "--database", "mysql://x/y")
    assert bad_url.returncode == 1 and "ConfigError" in bad_url.stderr


def test_bad_usage_exits_2(tarry: Tarry) -> None:
    for args in (
        ("start", "quick", "--payload", "{bad"),
        ("signal", "k", "--data", "[1,"),
        ("send-event", "x", "--data", "nope"),
        ("message", "r", "n", "--data", "{"),
        ("runs", "--bogus"),
        ("runs", "--status", "sleeping"),
        ("runs", "--limit", "0"),
        ("run",),
        ("frobnicate",),
        ("worker", "no/such/file.py"),
        ("worker", "no_such_module_here:app"),
        ("worker", f"{TARGET}:nothing"),
    ):
        done = tarry(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr


def test_serve_refuses_a_public_address_without_a_token(tarry: Tarry) -> None:
    for host in ("0.0.0.0", "192.0.2.10", "example.com"):
        done = tarry("serve", TARGET, "--host", host, "--port", "0")
        assert done.returncode == 2
        assert "refusing to listen" in done.stderr and "TARRY_API_TOKEN" in done.stderr


def test_json_output_parses_everywhere(tarry: Tarry) -> None:
    assert tarry("init", TARGET).returncode == 0
    run_id = tarry.json("start", "quick", "--payload", '{"n": 1}')["run_id"]
    assert tarry.json("run", run_id)["status"] == "queued"
    assert tarry.json("runs")["items"][0]["id"] == run_id
    assert tarry.json("signal", "later")["status"] == "buffered"
    page = json.loads(tarry("runs", "--json", "--limit", "1").stdout)
    assert [r["id"] for r in page["items"]] == [run_id]


def test_worker_stops_cleanly_on_sigterm(tarry: Tarry, worker: subprocess.Popen[str]) -> None:
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0


def test_worker_loads_a_module_target(tarry: Tarry) -> None:
    server_tests = str(Path(TARGET).parent)
    proc = tarry.spawn("worker", "serve_target:app", env={"PYTHONPATH": server_tests})
    assert "approval" in read_line(proc, "tarry: worker")
    run_id = tarry.json("start", "quick", "--payload", '"hi"')["run_id"]
    assert tarry.wait_status(run_id, "completed")["output"] == "hi"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0
