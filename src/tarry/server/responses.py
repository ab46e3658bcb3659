"""The API's response bodies, and how tarry's models become them.

Each route declares one of these as its response model, so the OpenAPI document
states every field a client reads; ``run_out`` and ``workflow_out`` convert the
App's records. ``ErrorOut`` is the one shape of every error. The request bodies
are in ``bodies``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..models import FailedAttempt, Run, RunChange, StepRecord, WaitingFor
from ..queued_reason import why_queued

if TYPE_CHECKING:
    from ..registry import Workflow

RunStatusName = Literal["queued", "running", "waiting", "completed", "failed", "cancelled"]


class BulkOut(BaseModel):
    matched: int = Field(description="runs the filter matched (dry_run: that it would act on)")
    done: list[str] = Field(description="the runs acted on; for a fork, the new runs")
    skipped: dict[str, str] = Field(description="runs matched but left as they were, with why")
    dry_run: bool


class StartOut(BaseModel):
    run_id: str


class SignalOut(BaseModel):
    status: Literal["delivered", "buffered"]
    run_id: str | None


class EventOut(BaseModel):
    event_ids: list[str]
    started: list[str]
    resumed: list[str]


class MessageOut(BaseModel):
    run_id: str
    name: str


class WaitingForOut(BaseModel):
    # "schema" shadows a BaseModel attribute: the field is schema_, written as "schema".
    model_config = ConfigDict(serialize_by_alias=True)

    kind: str = Field(
        description="signal, event, message, sleep, invoke; any or all (several conditions); "
        "branches (steps started side by side, each with its wait in waits)"
    )
    step: str
    key: str | None
    expires_at: datetime | None = Field(description="for branches, the earliest deadline")
    waits: list[WaitingForOut] = Field(
        default_factory=list, description="for branches: each branch's wait"
    )
    conditions: list[str] = Field(
        default_factory=list,
        description="for a wait on several conditions: each, e.g. 'signal contract:42'",
    )
    arrived: list[int] = Field(
        default_factory=list,
        description="for wait_for_all and quorums: the indexes in conditions of those "
        "that have arrived, in arrival order",
    )
    needs: int | None = Field(
        default=None, description="for wait_for_all and quorums: how many arrivals it needs"
    )
    schema_: dict[str, Any] | None = Field(
        default=None,
        alias="schema",
        description="for a typed wait on one condition: the JSON Schema the data sent to "
        "it must fit (else 422)",
    )
    schemas: list[dict[str, Any] | None] = Field(
        default_factory=list,
        description="for a wait on several conditions of which some are typed: each "
        "one's JSON Schema (null: untyped), in the order of conditions",
    )


class FailedAttemptOut(BaseModel):
    step: str
    attempt: int
    error: Any = Field(description="{type, message, traceback}")
    started_at: datetime | None
    ended_at: datetime | None


class RunChangeOut(BaseModel):
    action: str = Field(description="retried or forked")
    at: datetime
    detail: Any = Field(description="by whom; for a fork, from_run and from_step")


class ForkedFromOut(BaseModel):
    run_id: str
    step: str


class StepOut(BaseModel):
    id: str
    kind: str
    status: str
    output: Any
    error: Any
    attempts: int
    started_at: datetime | None
    ended_at: datetime | None
    failed_attempts: list[FailedAttemptOut] = Field(
        description="every attempt of the step that raised, oldest first, across retries"
    )


class RunOut(BaseModel):
    id: str
    workflow: str
    status: RunStatusName
    payload: Any
    output: Any
    error: Any
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    waiting_for: WaitingForOut | None
    version: str | None = Field(default=None, description="the code version it started on")
    last_version: str | None = Field(
        default=None, description="the code version of its latest attempt"
    )
    steps: list[StepOut] | None = Field(
        default=None, description="the step records; only on GET /runs/{id}"
    )
    failed_attempts: list[FailedAttemptOut] | None = Field(
        default=None, description="every failed attempt of its steps; only on GET /runs/{id}"
    )
    changes: list[RunChangeOut] | None = Field(
        default=None, description="retries and the fork it came from; only on GET /runs/{id}"
    )
    forked_from: ForkedFromOut | None = Field(
        default=None, description="the run and step it was forked from; only on GET /runs/{id}"
    )
    due_at: datetime | None = Field(
        default=None,
        description="for a queued run, when it may start (later than now: a delayed start or "
        "a retry's backoff); null otherwise",
    )
    queued_reason: str | None = Field(
        default=None,
        description="for a queued run, why it is not running yet ('delayed until ...', "
        "'scheduled (cron slot ...)'); null when it waits only for a worker",
    )


class RunPageOut(BaseModel):
    items: list[RunOut]
    next_cursor: str | None


class TriggerOut(BaseModel):
    event: str
    if_: str | None = Field(serialization_alias="if")


class CancelOnOut(BaseModel):
    event: str
    match: str | None
    if_: str | None = Field(serialization_alias="if")


class ScheduleOut(BaseModel):
    cron: str
    tz: str
    catch_up: Literal["latest", "all", "none"]


class WorkflowOut(BaseModel):
    id: str
    retries: int
    triggers: list[TriggerOut]
    cancel_on: list[CancelOnOut]
    schedule: ScheduleOut | None = Field(
        default=None, description="its cron schedule (tarry.cron), or null"
    )


class ViolationOut(BaseModel):
    path: str = Field(description="a JSON path into the data sent: $, $.by, $.items[0]")
    message: str


class ErrorDetail(BaseModel):
    type: str
    message: str
    errors: list[ViolationOut] | None = Field(
        default=None,
        description="PayloadInvalid only: each way the data breaks the JSON Schema of "
        "the wait or token it was sent to",
    )


class ErrorOut(BaseModel):
    """Every error the API answers has this one shape."""

    error: ErrorDetail


def waiting_out(waiting: WaitingFor | None) -> WaitingForOut | None:
    if waiting is None:
        return None
    return WaitingForOut(
        kind=waiting.kind,
        step=waiting.step,
        key=waiting.key,
        expires_at=waiting.expires_at,
        waits=[w for w in map(waiting_out, waiting.waits) if w is not None],
        conditions=list(waiting.conditions),
        arrived=list(waiting.arrived),
        needs=waiting.needs,
        schema=waiting.schema,
        schemas=list(waiting.schemas),
    )


def attempt_out(attempt: FailedAttempt) -> FailedAttemptOut:
    return FailedAttemptOut(
        step=attempt.step,
        attempt=attempt.attempt,
        error=attempt.error,
        started_at=attempt.started_at,
        ended_at=attempt.ended_at,
    )


def change_out(change: RunChange) -> RunChangeOut:
    return RunChangeOut(action=change.action, at=change.at, detail=change.detail)


def step_out(step: StepRecord) -> StepOut:
    return StepOut(
        id=step.id,
        kind=step.kind,
        status=step.status,
        output=step.output,
        error=step.error,
        attempts=step.attempts,
        started_at=step.started_at,
        ended_at=step.ended_at,
        failed_attempts=[attempt_out(a) for a in step.failed_attempts],
    )


def run_out(run: Run, *, with_steps: bool, now: float | None = None) -> RunOut:
    """The run as the API writes it; ``now`` (the App's clock) gives its queued reason."""
    out = RunOut(
        id=run.id,
        workflow=run.workflow,
        status=run.status,
        payload=run.payload,
        output=run.output,
        error=run.error,
        created_at=run.created_at,
        updated_at=run.updated_at,
        ended_at=run.ended_at,
        waiting_for=waiting_out(run.waiting_for),
        version=run.version,
        last_version=run.last_version,
        steps=[step_out(s) for s in run.steps] if with_steps else None,
        due_at=run.due_at,
        queued_reason=None if now is None else why_queued(run, now),
    )
    if with_steps:
        forked = run.forked_from
        out.failed_attempts = [attempt_out(a) for a in run.failed_attempts]
        out.changes = [change_out(c) for c in run.changes]
        out.forked_from = (
            None if forked is None else ForkedFromOut(run_id=forked[0], step=forked[1])
        )
    return out


def workflow_out(workflow: Workflow) -> WorkflowOut:
    cron = workflow.schedule
    return WorkflowOut(
        id=workflow.id,
        retries=workflow.retries,
        triggers=[TriggerOut(event=t.event, if_=t.if_) for t in workflow.triggers],
        cancel_on=[CancelOnOut(event=c.name, match=c.match, if_=c.if_) for c in workflow.cancel_on],
        schedule=None
        if cron is None
        else ScheduleOut(cron=cron.expression, tz=cron.tz, catch_up=cron.catch_up),
    )
