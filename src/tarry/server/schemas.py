"""The API's request and response bodies, and their conversion from tarry's models.

Request models forbid unknown fields and use strict booleans, so a typo or a
wrong type is a 422 naming the field instead of a silently ignored value.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictBool

from ..models import Run, StepRecord, WaitingFor
from ..names import MAX_NAME

if TYPE_CHECKING:
    from ..registry import Workflow

# A cursor is a run's sequence number: decimal ASCII digits that fit a signed 64-bit
# integer (``str.isdigit`` also takes "²" and the store cannot bind 20 digits).
CURSOR_PATTERN = r"^[0-9]{1,18}$"

RunStatusName = Literal["queued", "running", "waiting", "completed", "failed", "cancelled"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# A name the store indexes (names.py): the document states the rule, and the App
# enforces it, so that a name past it is a 400 naming the field, as from the App.
_NAME_RULE: dict[str, JsonValue] = {"maxLength": MAX_NAME, "pattern": "^[^\\u0000]*$"}


def _name(description: str, **options: Any) -> Any:
    return Field(
        min_length=1,
        description=f"{description}: at most {MAX_NAME} characters, no NUL",
        json_schema_extra=_NAME_RULE,
        **options,
    )


class StartBody(_Body):
    workflow: str = _name("a registered workflow id")
    payload: Any = None
    run_id: str | None = _name("the run's id (a second start with it is ignored)", default=None)


class SignalBody(_Body):
    signal: str = _name("the signal key")
    data: Any = Field(
        default_factory=dict,
        description="any JSON value but null (null is what a wait returns on timeout)",
        json_schema_extra={"not": {"type": "null"}},
    )
    strict: StrictBool = False


class EventBody(_Body):
    name: str = _name("the event name")
    data: Any = Field(default_factory=dict)
    id: str | None = _name("the event id (a repeat within 24 h is ignored)", default=None)


class MessageBody(_Body):
    name: str = _name("the message name")
    data: Any = Field(default_factory=dict)


class CancelBody(_Body):
    reason: str | None = None


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
    kind: str
    step: str
    key: str | None
    expires_at: datetime | None


class StepOut(BaseModel):
    id: str
    kind: str
    status: str
    output: Any
    error: Any
    attempts: int
    started_at: datetime | None
    ended_at: datetime | None


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
    steps: list[StepOut] | None = Field(
        default=None, description="the step records; only on GET /runs/{id}"
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


class WorkflowOut(BaseModel):
    id: str
    retries: int
    triggers: list[TriggerOut]
    cancel_on: list[CancelOnOut]


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


def waiting_out(waiting: WaitingFor | None) -> WaitingForOut | None:
    if waiting is None:
        return None
    return WaitingForOut(
        kind=waiting.kind, step=waiting.step, key=waiting.key, expires_at=waiting.expires_at
    )


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
    )


def run_out(run: Run, *, with_steps: bool) -> RunOut:
    return RunOut(
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
        steps=[step_out(s) for s in run.steps] if with_steps else None,
    )


def workflow_out(workflow: Workflow) -> WorkflowOut:
    return WorkflowOut(
        id=workflow.id,
        retries=workflow.retries,
        triggers=[TriggerOut(event=t.event, if_=t.if_) for t in workflow.triggers],
        cancel_on=[CancelOnOut(event=c.name, match=c.match, if_=c.if_) for c in workflow.cancel_on],
    )
