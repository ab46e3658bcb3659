"""``tarry run`` and ``tarry runs`` on runs parked on several things at once: each
branch's wait, and each condition arrived or pending."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import ROOT, Tarry, read_line

pytestmark = pytest.mark.slow

TARGET = str(ROOT / "tests" / "server" / "parallel_target.py")


def park(tarry: Tarry, workflow: str, order: str) -> str:
    run_id: str = tarry.json("start", workflow, "--payload", f'{{"order": "{order}"}}')["run_id"]
    tarry.wait_status(run_id, "waiting")
    return run_id


def until(tarry: Tarry, run_id: str, ready: Callable[[Any], bool]) -> Any:
    give_up = time.monotonic() + 20
    while not ready((run := tarry.json("run", run_id))["waiting_for"]):
        assert time.monotonic() < give_up, run
        time.sleep(0.1)
    return run


def test_run_shows_conditions_arrived_and_pending(tarry: Tarry) -> None:
    read_line(tarry.spawn("worker", TARGET), "tarry: worker")
    docs = park(tarry, "documents", "c-1")
    assert tarry("message", docs, "payment", "--data", '{"paid": 10}').returncode == 0
    votes = park(tarry, "review", "c-1")
    assert tarry("signal", "review:c-1:cy").returncode == 0
    paired = park(tarry, "paired", "c-3")

    run = until(tarry, docs, lambda w: w["arrived"] == [1])
    assert run["waiting_for"]["conditions"] == ["signal contract:c-1", "message payment"]
    shown = tarry("run", docs)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any(row.startswith("waiting for all docs: 1 of 2 arrived until ") for row in lines)
    at = lines.index("  arrived  message payment")
    assert lines[at + 1] == "  pending  signal contract:c-1"

    until(tarry, votes, lambda w: w["arrived"] == [2])
    lines = tarry("run", votes).stdout.splitlines()
    at = lines.index("  arrived  signal review:c-1:cy")
    assert lines[at + 1 : at + 3] == [
        "  pending  signal review:c-1:ann",
        "  pending  signal review:c-1:bob",
    ]

    branches = until(tarry, paired, lambda w: w["kind"] == "branches")["waiting_for"]
    assert [(w["kind"], w["step"], w["key"]) for w in branches["waits"]] == [
        ("signal", "contract", "contract:c-3"),
        ("message", "payment", "payment"),
    ]
    lines = tarry("run", paired).stdout.splitlines()
    assert any(
        row.startswith("waiting for 2 waits: signal, message; first deadline") for row in lines
    )
    assert any(row.startswith("  signal contract:c-3 at step contract until ") for row in lines)
    assert any(row.startswith("  message payment at step payment until ") for row in lines)

    table = tarry("runs").stdout
    assert "all docs: 1 of 2 arrived" in table and "any votes: 1 of 3 arrived (needs 2)" in table
    assert "2 waits: signal, message" in table
