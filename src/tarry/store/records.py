"""The plain records the store takes and gives: runs, steps, leases, waits, events,
outcomes. Frozen dataclasses (or slotted ones the core fills in), no behaviour;
``store.base`` re-exports them with the Store protocol."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ..errors import Violation
from ..models import RunStatus, StepKind, StepStatus, WaiterKind, WaitKind
from .flow_records import FlowRules
from .token_records import TokenWait


@dataclass(frozen=True, slots=True)
class Lease:
    run_id: str
    token: str


@dataclass(slots=True)
class StepRow:
    """A step record."""

    key: str
    kind: StepKind
    status: StepStatus
    output: bytes | None = None
    error: bytes | None = None
    attempts: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    pos: int | None = None
    """The step's place in its run: the n-th step its handler reached (None: recorded
    before tarry kept it)."""
    spec: str | None = None
    """For a wait: what it waits on (kinds, keys, names, conditions), as the code that
    parked it described it; a replay compares its own against it."""
    due_at: float | None = None
    """For a waiting step: its own deadline (``inf``: none); for a retrying one, when
    it may run again. A run parked on several waits times each out on its own."""
    need: int | None = None
    """For a wait for several arrivals: how many it needs; ``output`` holds the
    arrivals so far, ``[{"index", "value"}, ...]``."""
    trace: str | None = None
    """For a resolved wait: the trace context (W3C ``traceparent``) of the code whose
    signal, event, message or token completed it."""


@dataclass(slots=True)
class RunRow:
    id: str
    workflow: str
    status: RunStatus
    payload: bytes | None
    output: bytes | None
    error: bytes | None
    created_at: float
    updated_at: float
    ended_at: float | None
    due_at: float | None
    waiting_for: bytes | None
    cancel_requested: bool
    seq: int
    trigger: bytes | None = None
    """The event that started the run, as JSON; None for a run from ``App.start``."""
    version: str | None = None
    """The code version the run started on."""
    last_version: str | None = None
    """The code version of its latest attempt (or of its start)."""
    trace: str | None = None
    """The trace context (W3C ``traceparent``) of the code that started the run, as
    the claim reads it (other reads leave it None)."""


@dataclass(frozen=True, slots=True)
class NewRun:
    id: str
    workflow: str
    payload: bytes
    trigger: bytes | None = None
    parent: str | None = None
    """The run that started this one with ``step.invoke``."""
    version: str | None = None
    """The code version of the workflow in the process creating the run (None: not
    registered there; the first attempt records its own)."""
    trace: str | None = None
    """The trace context (W3C ``traceparent``) of the code that started the run."""
    due_at: float | None = None
    """When the run may start (a delayed start); None, or a time passed: now."""
    priority: int | None = None
    """Claimed before due runs of lower priority (None: the workflow's own, else 0)."""


@dataclass(frozen=True, slots=True)
class Filing:
    """An event condition as the store keeps it: the CEL ``expr`` evaluated on
    candidates (None: any event of that name), and the equality it is filed under:
    the incoming event's ``path`` equals ``value`` (canonical JSON) — or, in a
    workflow's stored ``cancel_on``, equals the run trigger's ``event_path``,
    resolved when the run is created. ``path`` None: not indexable."""

    event: str
    expr: str | None = None
    path: str | None = None
    value: str | None = None
    event_path: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowConfig:
    """What starts and cancels runs of a workflow: ``triggers`` are (event, CEL
    ``if`` or None); ``cancel_on`` are filings resolved against each run's trigger."""

    id: str
    triggers: tuple[tuple[str, str | None], ...] = ()
    cancel_on: tuple[Filing, ...] = ()
    flow: FlowRules | None = None
    """Keyed limits, rate, debounce and default priority (None: none)."""


@dataclass(frozen=True, slots=True)
class MessageRow:
    name: str
    data: bytes
    sent_at: float
    consumed_by: str | None


@dataclass(frozen=True, slots=True)
class NewEvent:
    id: str
    name: str
    data: bytes
    dedupe: bool
    """True when ``id`` came from the sender: a repeat within the dedupe window is ignored."""
    trace: str | None = None
    """The trace context (W3C ``traceparent``) of the sender, for the runs the event
    starts or resumes."""


@dataclass(frozen=True, slots=True)
class EventRow:
    seq: int
    id: str
    name: str
    data: bytes
    ts: float


@dataclass(frozen=True, slots=True)
class EventOutcome:
    event_id: str
    duplicate: bool = False
    started: tuple[str, ...] = ()
    resumed: tuple[str, ...] = ()
    cancelled: tuple[str, ...] = ()
    cancel_requested: bool = False
    """For a step's send: the sending run's cancellation was requested."""
    workflows: dict[str, str] = field(default_factory=dict)
    """The workflow of each run started or cancelled, by run id: read in the event's
    transaction, so the sender can tell of them before a worker has moved them on."""


@dataclass(slots=True)
class ClaimedRun:
    run: RunRow
    steps: list[StepRow]
    lease: Lease
    due_at: float | None = None
    """When the run became due: its due time before this claim (the claim writes its
    lease's expiry there). None where not known."""
    summary: tuple[int, int] | None = None
    """For a run claimed without its steps (``skip_steps``): its step records' count and
    highest place, read in the claim's transaction (what ``Store.step_summary`` reads)."""


@dataclass(slots=True)
class Handoff:
    """A worker of the sending process offers to take the run a signal or message
    wakes: the delivery's transaction leases the run to it, if it takes the run's
    workflow, so no claim is needed to wake it. ``taken``: the run so leased (None:
    left due for a claim), with its steps, or only their summary where ``asleep``
    says the run sleeps in that worker (sticky execution; asked inside the
    transaction)."""

    token: str
    lease_seconds: float
    workflows: Collection[str]
    asleep: Callable[[str], bool]
    taken: ClaimedRun | None = None


@dataclass(slots=True)
class ClaimBatch:
    runs: list[ClaimedRun]
    next_due: float | None
    """The earliest ``due_at`` among the claimable runs left behind, if any."""


@dataclass(frozen=True, slots=True)
class SignalWait:
    """Woken by a signal on ``key``; a buffered one is consumed at once.
    ``on_conflict`` says what to do when another run waits on the key."""

    key: str
    on_conflict: Literal["fail", "replace"] = "fail"
    schema: bytes | None = None
    """The JSON Schema the data must fit (None: any data); a buffered signal that
    does not fit stays buffered."""
    kind: ClassVar[WaiterKind] = "signal"


@dataclass(frozen=True, slots=True)
class EventWait:
    """Woken by an event per ``filing``. ``since``: the lookback window searched for
    an event already received (None: none), minus the event ids in ``exclude``."""

    filing: Filing
    since: float | None = None
    exclude: tuple[str, ...] = ()
    kind: ClassVar[WaiterKind] = "event"


@dataclass(frozen=True, slots=True)
class MessageWait:
    """Woken by a message in the run's own mailbox named ``name`` (None: any name);
    the oldest unconsumed one is taken at once."""

    name: str | None = None
    schema: bytes | None = None
    """The JSON Schema the data must fit (None: any data); a queued message that
    does not fit stays queued for another wait."""
    kind: ClassVar[WaiterKind] = "message"


@dataclass(frozen=True, slots=True)
class InvokeWait:
    """Woken by the end of the child run ``child``, which is created in the same
    transaction unless it exists."""

    child: NewRun
    kind: ClassVar[WaiterKind] = "invoke"


WaitCondition = SignalWait | EventWait | MessageWait | InvokeWait | TokenWait
"""One thing a wait can be woken by."""


@dataclass(frozen=True, slots=True)
class WaitSpec:
    """What a run parks on: any of ``conditions``, or ``deadline`` (None: forever).

    No conditions is a sleep. With ``indexed`` (``wait_for_any``) the step's result
    is ``{"index": i, "value": v}`` naming the condition that fired; otherwise it is
    the value alone. Timing out stores ``None``. ``waiting_for`` is the JSON shown
    to people as the run's ``waiting_for``.
    """

    step_key: str
    kind: WaitKind
    deadline: float | None
    waiting_for: bytes
    conditions: tuple[WaitCondition, ...] = ()
    indexed: bool = False
    started_at: float | None = None
    pos: int | None = None
    spec: str | None = None
    need: int | None = None
    """Arrivals needed before the wait returns (None: the first)."""


@dataclass(frozen=True, slots=True)
class ParkResult:
    """``parked``: the lease is released and the run waits. ``resolved``: the wait was
    satisfied inside the same transaction (a buffered signal, a past deadline);
    the step is stored as ``step`` and the caller keeps its lease. ``conflict``:
    another run (``other_run``) holds the key; the step is stored as failed.
    ``cancelled``: the run's cancellation was pending, so it ended cancelled in
    the same transaction instead of parking; the lease is gone."""

    outcome: Literal["parked", "resolved", "conflict", "cancelled"]
    step: StepRow | None = None
    other_run: str | None = None


@dataclass(frozen=True, slots=True)
class SignalOutcome:
    status: Literal["delivered", "buffered", "not_found", "invalid"]
    run_id: str | None = None
    cancel_requested: bool = False
    """For a step's send: the sending run's cancellation was requested."""
    errors: tuple[Violation, ...] = ()
    """``invalid``: how the data breaks the schema of the wait of ``run_id`` on the
    key; nothing was delivered or buffered (a step's send is stored as failed)."""


@dataclass(frozen=True, slots=True)
class StepSender:
    """Makes a delivery part of a step: the step's result is written in the same
    transaction, fenced by ``lease``, so it happens exactly once per run."""

    lease: Lease
    step_key: str
    started_at: float
    pos: int | None = None


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One failed attempt of a step: its error JSON (type, message, traceback)."""

    key: str
    attempt: int
    error: bytes
    started_at: float | None
    ended_at: float | None


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """Something done to a run from outside its code (retried, forked), with JSON
    ``detail`` (who, from where)."""

    action: str
    at: float
    detail: bytes


@dataclass(frozen=True, slots=True)
class RunHistory:
    attempts: list[AttemptRow]
    changes: list[ChangeRow]


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a bulk operation applies to: None matches any. ``since`` and
    ``until`` bound the creation time (epoch seconds, ``until`` exclusive)."""

    workflow: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None
    live: bool = False
    """Only runs that have not ended."""

    def params(self) -> dict[str, object]:
        return {"workflow": self.workflow, "status": self.status, "since": self.since,
                "until": self.until, "live": self.live}  # fmt: skip


@dataclass(frozen=True, slots=True)
class LeaseStatus:
    lost: set[str] = field(default_factory=set)
    cancel_requested: set[str] = field(default_factory=set)
