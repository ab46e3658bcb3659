"""The public value types: frozen dataclasses that carry no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar, get_args

T = TypeVar("T")

# -- the one vocabulary of statuses and kinds, used by every layer and both stores --

RunStatus = Literal["queued", "running", "waiting", "completed", "failed", "cancelled"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
EndStatus = Literal["completed", "failed", "cancelled"]
ENDED_STATUSES: frozenset[str] = frozenset(get_args(EndStatus))

StepStatus = Literal["completed", "failed", "waiting", "retrying", "timed_out", "cancelled"]
StepKind = Literal[
    "run",
    "sleep",
    "signal",
    "event",
    "message",
    "any",
    "invoke",
    "send_signal",
    "send_event",
    "patch",
    "all",
    "create_token",
    "token",
]
WaitKind = Literal["sleep", "signal", "event", "message", "any", "all", "invoke", "token"]
"""What a parked run waits on, as its ``waiting_for.kind`` says."""
WaiterKind = Literal["signal", "event", "message", "invoke", "cancel", "token"]
"""A waiter row: one condition of a wait, or a ``cancel_on`` condition of a run."""


def to_datetime(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    data: Any
    id: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class Message:
    name: str
    data: Any
    sent_at: datetime
    consumed_by: str | None = None
    """In a run's history: the step that took it, or None while it is queued."""


@dataclass(frozen=True, slots=True)
class Woken:
    """Which condition of a ``wait_for_any`` fired (``index``) and its value."""

    index: int
    value: Any


@dataclass(frozen=True, slots=True)
class SignalResult:
    status: Literal["delivered", "buffered"]
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    event_ids: list[str]
    started: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    duplicate: bool = False
    """The event's ``id`` was seen within ``event_dedupe``: nothing was stored,
    started or resumed."""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Token:
    """A callback token (``step.create_token``): ``id`` completes it from code
    (``app.complete_token``), ``url`` from anywhere (its signature is the credential);
    it expires at ``expires_at`` (None: when its run ends)."""

    id: str
    url: str
    expires_at: datetime | None
    name: str
    """The step id it was created under."""
    run_id: str
    schema: Any = field(default=None, compare=False, repr=False)
    """The token's ``schema=`` as the wait reads it (a ``WaitSchema``), or None."""


TokenState = Literal["pending", "completed", "expired", "ended"]
"""``ended``: the token's run ended (or is being cancelled) before it was completed."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a callback token is for and where it stands (``app.get_token``)."""

    id: str
    name: str
    run_id: str
    workflow: str
    state: TokenState
    created_at: datetime
    expires_at: datetime | None
    completed_at: datetime | None
    data: Any
    """What completed it (None while pending)."""
    schema: dict[str, Any] | None
    """The JSON Schema completions must fit, or None."""


@dataclass(frozen=True, slots=True)
class QueueKey:
    """One of a queued run's flow keys (``tarry.limit``, ``tarry.rate``,
    ``tarry.debounce``): its value, and for a concurrency limit how busy it is."""

    rule: str
    """``concurrency``, ``rate`` or ``debounce``."""
    key: str | None
    """The CEL expression (None: the rule has no key)."""
    value: Any
    executing: int | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Queue:
    """What holds a queued run back, besides its due time (``tarry.queued_reason``)."""

    priority: int = 0
    keys: tuple[QueueKey, ...] = ()
    ahead: int = 0
    """Due runs of a higher priority, which a claim takes first."""


@dataclass(frozen=True, slots=True)
class WaitingFor:
    """What a parked run waits for: ``kind`` is signal, event, message, sleep, any or invoke."""

    kind: str
    step: str
    key: str | None
    expires_at: datetime | None
    waits: list[WaitingFor] = field(default_factory=list)
    """For ``kind`` "branches": each branch's wait (steps started side by side)."""
    conditions: list[str] = field(default_factory=list)
    """For a wait on several conditions: what each is."""
    arrived: list[int] = field(default_factory=list)
    """For a wait for several arrivals (wait_for_all, a quorum): the indexes of the
    conditions that have fired, in arrival order."""
    needs: int | None = None
    """For such a wait: how many arrivals it needs (all of them, or the quorum)."""
    schema: dict[str, Any] | None = None
    """For a typed wait on one condition (``schema=``): the JSON Schema its data must
    fit (``tarry.wait_schema.is_approval`` tells the approval shape)."""
    schemas: list[dict[str, Any] | None] = field(default_factory=list)
    """For a wait on several conditions of which some are typed: each one's JSON
    Schema (None for an untyped one), in the order of ``conditions``."""


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    """One attempt of a step that raised: ``error`` is ``{type, message, traceback}``."""

    step: str
    attempt: int
    error: Any
    started_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class RunChange:
    """Something done to a run from outside its code: ``action`` is ``retried`` or
    ``forked``; ``detail`` says by whom and, for a fork, from which run and step."""

    action: str
    at: datetime
    detail: Any


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step of a run as stored. ``status``: completed, failed, waiting, retrying,
    timed_out or cancelled."""

    id: str
    kind: str
    status: str
    output: Any
    error: Any
    attempts: int
    started_at: datetime | None
    ended_at: datetime | None
    failed_attempts: list[FailedAttempt] = field(default_factory=list)
    """Every attempt of this step that raised, oldest first, across retries of the run
    (filled by ``get_run``)."""


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    workflow: str
    status: RunStatus
    payload: Any
    output: Any
    error: Any
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    waiting_for: WaitingFor | None
    steps: list[StepRecord]
    messages: list[Message] = field(default_factory=list)
    """The run's mailbox, oldest first (filled by ``get_run``; empty in listings)."""
    version: str | None = None
    """The code version the run started on (``App(version=)``, ``$TARRY_VERSION`` or
    the handler's source hash)."""
    last_version: str | None = None
    """The code version of its latest attempt."""
    failed_attempts: list[FailedAttempt] = field(default_factory=list)
    """Every failed attempt of any of its steps, oldest first (``get_run``)."""
    changes: list[RunChange] = field(default_factory=list)
    """Retries and the fork it came from, oldest first (``get_run``)."""
    due_at: datetime | None = None
    """For a queued run: when it may start (now or earlier: as soon as a worker is
    free; later: a delayed start, a retry's backoff). None for any other status."""
    queue: Queue | None = None
    """For a queued run (``get_run``, ``list_runs``): its priority and flow keys."""

    @property
    def forked_from(self) -> tuple[str, str] | None:
        """``(run_id, step)`` this run was forked from, if it was."""
        for change in self.changes:
            if change.action == "forked":
                return change.detail["from_run"], change.detail["from_step"]
        return None

    @property
    def ended(self) -> bool:
        return self.status in ENDED_STATUSES


def event_from_json(obj: Any) -> Event:
    """An Event from its stored form ``{name, data, id, ts}``."""
    return Event(obj["name"], obj["data"], obj["id"], datetime.fromtimestamp(obj["ts"], UTC))


def message_from_json(obj: Any) -> Message:
    """A Message from its stored form ``{name, data, sent_at}``."""
    return Message(obj["name"], obj["data"], datetime.fromtimestamp(obj["sent_at"], UTC))
