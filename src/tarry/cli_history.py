"""``tarry run RUN_ID``: one run in full, as text or JSON.

Besides its status and steps, a run shows what an operator needs to decide what
to do with it: every failed attempt of each step with its traceback (indented
under the step), the run's own error and traceback when it failed, and the
changes made to it from outside (retried by whom and when, forked from where).
"""

from __future__ import annotations

from typing import Any

import orjson

from .cli_common import say, waits, when
from .cli_json import run_json
from .models import FailedAttempt, Run, RunChange, WaitingFor
from .queued_reason import why_queued
from .waiting import conditions, tally

INDENT = "  "


def run_detail_json(run: Run, now: float | None = None) -> Any:
    """The run as ``tarry run --json`` prints it: the API's run with its steps, each
    step's ``failed_attempts``, and the run's ``failed_attempts``, ``changes`` and
    ``forked_from`` (``{run_id, step}`` or null)."""
    return run_json(run, with_steps=True, now=now)


def print_run(run: Run, now: float | None = None) -> None:
    say(f"run {run.id}  workflow {run.workflow}  {run.status}")
    reason = None if now is None else why_queued(run, now)
    if reason is not None:
        say(f"queued: {reason}")
    if run.forked_from:
        say(f"forked from run {run.forked_from[0]} at step {run.forked_from[1]}")
    if run.waiting_for:
        say(f"waiting for {waits(run)}")
        print_wait(run.waiting_for, 1)
    say(f"payload {dumps(run.payload)}")
    if run.output is not None:
        say(f"output  {dumps(run.output)}")
    if run.error is not None:
        say(f"error   {summary(run.error)}")
        print_traceback(run.error, 1)
    print_steps(run)
    if run.changes:
        say("changes:")
        for change in run.changes:
            say(f"{INDENT}{when(change.at)}  {describe_change(change)}")


def print_wait(wait: WaitingFor, depth: int) -> None:
    """Under the run's wait: each branch's wait, and each condition of a wait on
    several, ``arrived`` (in arrival order) or ``pending``."""
    for branch in wait.waits:
        until = f" until {when(branch.expires_at)}" if branch.expires_at else " no deadline"
        key = f" {branch.key}" if branch.key else ""
        shown = f": {tally(branch)}" if branch.conditions else ""
        say(f"{INDENT * depth}{branch.kind}{key} at step {branch.step}{until}{shown}")
        print_wait(branch, depth + 1)
    for condition in conditions(wait):
        state = "arrived" if condition.arrived else "pending"
        say(f"{INDENT * depth}{state}  {condition.text}")


def print_steps(run: Run) -> None:
    rows = [["step", "kind", "status", "attempts", "took", "output / error"]]
    for s in run.steps:
        took = ""
        if s.started_at and s.ended_at:
            took = f"{(s.ended_at - s.started_at).total_seconds() * 1000:.1f} ms"
        shown = summary(s.error) if s.error is not None else dumps(s.output)
        rows.append([s.id, s.kind, s.status, str(s.attempts), took, shown[:80]])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]

    def line(row: list[str]) -> str:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        return (INDENT + "  ".join([*cells, row[-1]])).rstrip()

    say(line(rows[0]))
    for step, row in zip(run.steps, rows[1:], strict=True):
        say(line(row))
        for attempt in step.failed_attempts:
            print_attempt(attempt, 2)
    listed = {s.id for s in run.steps}
    gone = [a for a in run.failed_attempts if a.step not in listed]
    if gone:
        say("failed attempts of steps not recorded now (reset by a retry):")
        for attempt in gone:
            print_attempt(attempt, 1, with_step=True)


def print_attempt(attempt: FailedAttempt, depth: int, *, with_step: bool = False) -> None:
    step = f"step {attempt.step} " if with_step else ""
    took = ""
    if attempt.started_at and attempt.ended_at:
        took = f" ({(attempt.ended_at - attempt.started_at).total_seconds() * 1000:.1f} ms)"
    say(
        f"{INDENT * depth}{step}attempt {attempt.attempt} failed at "
        f"{when(attempt.ended_at or attempt.started_at)}{took}: {summary(attempt.error)}"
    )
    print_traceback(attempt.error, depth + 1)


def print_traceback(error: Any, depth: int) -> None:
    text = error.get("traceback") if isinstance(error, dict) else None
    if isinstance(text, str) and text.strip():
        for row in text.rstrip().splitlines():
            say(f"{INDENT * depth}{row}" if row.strip() else "")


def describe_change(change: RunChange) -> str:
    detail = change.detail if isinstance(change.detail, dict) else {}
    by = f" by {detail['by']}" if detail.get("by") else ""
    if change.action == "forked":
        return f"forked from run {detail.get('from_run')} at step {detail.get('from_step')}{by}"
    return f"{change.action}{by}"


def summary(error: Any) -> str:
    """``Type: message`` for an error tarry recorded, else its JSON."""
    if isinstance(error, dict) and isinstance(error.get("type"), str):
        message = error.get("message")
        return f"{error['type']}: {message}" if message else error["type"]
    return dumps(error)


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
