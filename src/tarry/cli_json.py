"""Runs as ``--json`` prints them: the API's run body (``GET /api/v1/runs/{id}``),
built from tarry's models with no pydantic, so the CLI of a library install (no
``tarry[server]``) prints the same JSON the API sends. ``tests/cli`` checks the
two against each other."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .models import FailedAttempt, Run, RunChange, StepRecord, WaitingFor
from .queued_reason import why_queued


def iso(moment: datetime | None) -> str | None:
    """RFC 3339 as the API writes it: UTC as ``Z``."""
    if moment is None:
        return None
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def run_json(run: Run, *, with_steps: bool, now: float | None = None) -> dict[str, Any]:
    """The run; with its steps, failed attempts, changes and fork origin only
    ``with_steps`` (else those are null, as in the API's list of runs); ``now`` (the
    App's clock) gives a queued run's reason."""
    forked = run.forked_from
    return {
        "id": run.id,
        "workflow": run.workflow,
        "status": run.status,
        "payload": run.payload,
        "output": run.output,
        "error": run.error,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "ended_at": iso(run.ended_at),
        "waiting_for": waiting_json(run.waiting_for),
        "version": run.version,
        "last_version": run.last_version,
        "steps": [step_json(s) for s in run.steps] if with_steps else None,
        "failed_attempts": [attempt_json(a) for a in run.failed_attempts] if with_steps else None,
        "changes": [change_json(c) for c in run.changes] if with_steps else None,
        "forked_from": (
            {"run_id": forked[0], "step": forked[1]} if with_steps and forked is not None else None
        ),
        "due_at": iso(run.due_at),
        "queued_reason": None if now is None else why_queued(run, now),
    }


def waiting_json(waiting: WaitingFor | None) -> dict[str, Any] | None:
    if waiting is None:
        return None
    return {
        "kind": waiting.kind,
        "step": waiting.step,
        "key": waiting.key,
        "expires_at": iso(waiting.expires_at),
        "waits": [w for w in map(waiting_json, waiting.waits) if w is not None],
        "conditions": list(waiting.conditions),
        "arrived": list(waiting.arrived),
        "needs": waiting.needs,
        "schema": waiting.schema,
        "schemas": list(waiting.schemas),
    }


def step_json(step: StepRecord) -> dict[str, Any]:
    return {
        "id": step.id,
        "kind": step.kind,
        "status": step.status,
        "output": step.output,
        "error": step.error,
        "attempts": step.attempts,
        "started_at": iso(step.started_at),
        "ended_at": iso(step.ended_at),
        "failed_attempts": [attempt_json(a) for a in step.failed_attempts],
    }


def attempt_json(attempt: FailedAttempt) -> dict[str, Any]:
    return {
        "step": attempt.step,
        "attempt": attempt.attempt,
        "error": attempt.error,
        "started_at": iso(attempt.started_at),
        "ended_at": iso(attempt.ended_at),
    }


def change_json(change: RunChange) -> dict[str, Any]:
    return {"action": change.action, "at": iso(change.at), "detail": change.detail}
