"""``tarry retry``, ``cancel``, ``fork``, ``purge`` and the history ``tarry run`` shows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import Tarry, read_line

pytestmark = pytest.mark.slow

TARGET = str(Path(__file__).with_name("operate_target.py"))


@pytest.fixture
def op_store(tarry: Tarry) -> Tarry:
    """The store made and the target's workflows recorded, with no worker running."""
    made = tarry("init", TARGET)
    assert made.returncode == 0, made.stderr
    return tarry


@pytest.fixture
def op_worker(tarry: Tarry) -> subprocess.Popen[str]:
    proc = tarry.spawn("worker", TARGET)
    read_line(proc, "tarry: worker")
    return proc


def failed_charges(tarry: Tarry, *orders: str) -> list[str]:
    ids = [
        tarry.json("start", "charge", "--payload", json.dumps({"order": o}))["run_id"]
        for o in orders
    ]
    for run_id in ids:
        tarry.wait_status(run_id, "failed")
    return ids


def fix(tarry: Tarry) -> None:
    (tarry.cwd / "fixed").touch()


def step(run: Any, key: str) -> Any:
    return next(s for s in run["steps"] if s["id"] == key)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout


def refused(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stdout == ""
    for word in words:
        assert word in done.stderr, (word, done.stderr)


def test_run_shows_failed_attempts_and_retry_resumes_it(
    tarry: Tarry, op_worker: subprocess.Popen[str]
) -> None:
    [run_id] = failed_charges(tarry, "o1")
    shown = ok(tarry("run", run_id))
    assert "error   StepFailed: step 'pay' failed: card declined for o1" in shown
    lines = shown.splitlines()
    pay = next(i for i, line in enumerate(lines) if line.split()[:1] == ["pay"])
    assert lines[pay + 1].startswith("    attempt 1 failed at ")
    assert "RuntimeError: card declined for o1" in lines[pay + 1]
    assert lines[pay + 2].startswith("      Traceback (most recent call last):")
    assert "attempt 2 failed" in shown and "operate_target.py" in shown

    detail = tarry.json("run", run_id)
    assert "Traceback" in detail["error"]["traceback"] and detail["changes"] == []
    assert detail["forked_from"] is None
    attempts = step(detail, "pay")["failed_attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert "Traceback" in attempts[0]["error"]["traceback"]
    assert len(detail["failed_attempts"]) == 2 and step(detail, "load")["failed_attempts"] == []

    fix(tarry)
    assert "retried by alice" in ok(tarry("retry", run_id, "--by", "alice"))
    done = tarry.wait_status(run_id, "completed")
    assert done["output"] == {"receipt": "o1"}
    assert [c["action"] for c in done["changes"]] == ["retried"]
    assert done["changes"][0]["detail"]["by"] == "alice"
    assert len(step(done, "pay")["failed_attempts"]) == 2  # kept across the retry
    shown = ok(tarry("run", run_id))
    assert "changes:" in shown and "retried by alice" in shown

    refused(tarry("retry", run_id), 1, "RunStateError", "completed")
    refused(tarry("retry", "missing"), 1, "RunNotFound")
    refused(tarry("retry", run_id, "--dry-run"), 2, "--dry-run")
    refused(tarry("retry", run_id, "--workflow", "charge"), 2, "not both")


def test_retry_notes_the_os_user_by_default(op_store: Tarry) -> None:
    tarry = op_store
    run_id = tarry.json("start", "hold", "--payload", '{"n": 1}')["run_id"]
    ok(tarry("cancel", run_id))
    retried = tarry("retry", run_id, "--json", env={"USER": "ops-bot"})
    assert json.loads(ok(retried))["status"] == "queued"
    assert tarry.json("run", run_id)["changes"][0]["detail"] == {"by": "ops-bot"}


def test_bulk_retry(tarry: Tarry, op_worker: subprocess.Popen[str]) -> None:
    ids = failed_charges(tarry, "b1", "b2")
    other = tarry.json("start", "hold", "--payload", '{"n": 2}')["run_id"]
    tarry.wait_status(other, "waiting")

    assert ok(tarry("retry", "--workflow", "charge", "--dry-run")).strip() == "would retry 2 runs"
    assert ok(tarry("retry", "--all", "--dry-run")).strip() == "would retry 2 runs"
    assert tarry.json("retry", "--since", "1h", "--dry-run") == {
        "matched": 2,
        "done": [],
        "skipped": {},
        "dry_run": True,
    }
    assert ok(tarry("retry", "--until", "1h", "--dry-run")).strip() == "would retry 0 runs"
    assert ok(tarry("retry", "--status", "cancelled", "--dry-run")).strip() == "would retry 0 runs"
    for run_id in ids:  # nothing changed by the dry runs
        run = tarry.json("run", run_id)
        assert run["status"] == "failed" and run["changes"] == []

    refused(tarry("retry"), 2, "--all")
    refused(tarry("retry", "--since", "yesterday"), 2, "'yesterday'")
    refused(tarry("retry", "--status", "running"), 2, "failed, cancelled")

    fix(tarry)
    summary = ok(tarry("retry", "--workflow", "charge", "--since", "2026-01-01T00:00:00Z"))
    assert summary.splitlines()[0] == "matched 2 runs: retried 2, skipped 0"
    for run_id in ids:
        assert run_id in summary
        tarry.wait_status(run_id, "completed")
    assert tarry.json("run", other)["status"] == "waiting"


def test_cancel_one_and_in_bulk(op_store: Tarry) -> None:
    tarry = op_store
    holds = [
        tarry.json("start", "hold", "--payload", json.dumps({"n": n}))["run_id"] for n in (1, 2)
    ]
    charge = tarry.json("start", "charge", "--payload", '{"order": "c"}')["run_id"]

    assert ok(tarry("cancel", "--workflow", "hold", "--dry-run")).strip() == "would cancel 2 runs"
    assert ok(tarry("cancel", "--status", "queued", "--dry-run")).strip() == "would cancel 3 runs"
    assert {r["status"] for r in tarry.json("runs")["items"]} == {"queued"}

    refused(tarry("cancel"), 2, "--all")
    refused(tarry("cancel", "--status", "completed"), 2, "queued, running, waiting")
    dry = tarry("cancel", "--workflow", "hold", "--no-children", "--dry-run")
    assert ok(dry).strip() == "would cancel 2 runs"
    refused(tarry("cancel", "missing"), 1, "RunNotFound")

    result = tarry.json("cancel", "--workflow", "hold", "--reason", "cleanup")
    assert result["matched"] == 2 and sorted(result["done"]) == sorted(holds)
    for run_id in holds:
        run = tarry.json("run", run_id)
        assert run["status"] == "cancelled" and run["error"]["message"] == "cleanup"
    assert tarry.json("run", charge)["status"] == "queued"

    assert ok(tarry("cancel", charge, "--reason", "stop")).strip() == f"run {charge}: cancelled"
    assert ok(tarry("cancel", "--all")).startswith("matched 0 runs: cancelled 0")


def test_cancel_cascades_to_invoked_runs_unless_no_children(
    tarry: Tarry, op_worker: subprocess.Popen[str]
) -> None:
    def parent_and_child(n: int) -> tuple[str, str]:
        parent = tarry.json("start", "parent", "--payload", json.dumps({"n": n}))["run_id"]
        tarry.wait_status(parent, "waiting")
        children = tarry.json("runs", "--workflow", "hold")["items"]
        child = next(c["id"] for c in children if c["payload"] == {"n": n})
        tarry.wait_status(child, "waiting")
        return parent, child

    parent, child = parent_and_child(1)
    assert tarry.json("cancel", parent, "--no-children")["status"] == "cancelled"
    assert tarry.json("run", child)["status"] == "waiting"

    parent, child = parent_and_child(2)
    assert tarry.json("cancel", parent)["status"] == "cancelled"
    assert tarry.json("run", child)["status"] == "cancelled"


def test_fork_one_run(tarry: Tarry, op_worker: subprocess.Popen[str]) -> None:
    [run_id] = failed_charges(tarry, "f1")
    refused(tarry("fork", run_id, "--from-step", "nope"), 1, "'nope'", "['load', 'pay']")
    refused(tarry("fork", "missing", "--from-step", "pay"), 1, "RunNotFound")
    refused(tarry("fork", run_id), 2, "--from-step")
    refused(tarry("fork", run_id, "--from-step", "pay", "--payload", "{"), 2, "--payload")

    fix(tarry)
    new_id = ok(tarry("fork", run_id, "--from-step", "pay", "--by", "bob")).strip()
    forked = tarry.wait_status(new_id, "completed")
    assert forked["output"] == {"receipt": "f1"}
    assert forked["forked_from"] == {"run_id": run_id, "step": "pay"}
    assert forked["changes"][0]["detail"]["by"] == "bob"
    assert step(forked, "load")["output"] == {"order": "f1"}
    assert f"forked from run {run_id} at step pay" in ok(tarry("run", new_id))
    assert tarry.json("run", run_id)["status"] == "failed"  # the original stays as it was

    again = tarry.json("fork", run_id, "--from-step", "load", "--payload", '{"order": "f2"}',
                       "--run-id", "f2-fork")  # fmt: skip
    assert again == {"run_id": "f2-fork", "forked_from": {"run_id": run_id, "step": "load"}}
    assert tarry.wait_status("f2-fork", "completed")["output"] == {"receipt": "f2"}

    live = tarry.json("start", "hold", "--payload", '{"n": 9}')["run_id"]
    refused(tarry("fork", live, "--from-step", "wait"), 1, "RunStateError")


def test_bulk_fork(tarry: Tarry, op_worker: subprocess.Popen[str]) -> None:
    ids = failed_charges(tarry, "g1", "g2")
    hold = tarry.json("start", "hold", "--payload", '{"n": 3}')["run_id"]
    tarry.wait_status(hold, "waiting")
    ok(tarry("cancel", hold))
    before = len(tarry.json("runs")["items"])

    dry = ok(tarry("fork", "--from-step", "pay", "--workflow", "charge", "--dry-run"))
    assert dry.strip() == "would fork 2 runs from step pay"
    assert len(tarry.json("runs")["items"]) == before

    refused(tarry("fork", "--from-step", "pay"), 2, "--all")
    refused(tarry("fork", "--from-step", "pay", "--all", "--payload", "{}"), 2, "--payload")
    refused(tarry("fork", "--from-step", "pay", "--status", "waiting"), 2, "completed")

    fix(tarry)
    summary = ok(tarry("fork", "--from-step", "pay", "--status", "cancelled"))
    assert summary.splitlines()[0] == "matched 1 run: forked 0 from step pay, skipped 1"
    assert f"skipped {hold}: " in summary and "recorded no step 'pay'" in summary

    result = tarry.json("fork", "--from-step", "pay", "--workflow", "charge", "--status", "failed")
    assert result["matched"] == 2 and len(result["done"]) == 2 and result["skipped"] == {}
    for new_id in result["done"]:
        forked = tarry.wait_status(new_id, "completed")
        assert forked["forked_from"]["run_id"] in ids


def test_purge(op_store: Tarry) -> None:
    tarry = op_store
    ended = [
        tarry.json("start", "hold", "--payload", json.dumps({"n": n}))["run_id"] for n in (1, 2)
    ]
    for run_id in ended:
        ok(tarry("cancel", run_id))
    live = tarry.json("start", "hold", "--payload", '{"n": 3}')["run_id"]

    dry = ok(tarry("purge", "--older-than", "0s", "--dry-run", "--export", "never.jsonl"))
    assert dry.strip() == "would purge 2 runs that ended more than 0s ago"
    assert not (tarry.cwd / "never.jsonl").exists()
    assert tarry.json("purge", "--older-than", "1d") == {
        "purged": 0,
        "dry_run": False,
        "export": None,
    }
    assert ok(tarry("purge", "--older-than", "0s", "--workflow", "charge")).startswith(
        "purged 0 runs"
    )
    assert len(tarry.json("runs")["items"]) == 3  # nothing gone yet

    refused(tarry("purge", "--older-than", "3x"), 2, "--older-than", "'3x'")
    refused(tarry("purge"), 2, "--older-than")
    refused(tarry("purge", "--older-than", "0s", "--export", "no/such/dir/x.jsonl"), 2, "--export")

    done = ok(tarry("purge", "--older-than", "0s", "--export", "runs.jsonl"))
    assert done.strip() == "purged 2 runs that ended more than 0s ago; written to runs.jsonl first"
    lines = (tarry.cwd / "runs.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(ended)
    for run_id in ended:
        refused(tarry("run", run_id), 1, "RunNotFound")
    assert tarry.json("run", live)["status"] == "queued"
