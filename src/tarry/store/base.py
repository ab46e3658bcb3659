"""The Store protocol: every durable operation tarry performs, as plain records.

Each method is one transaction. Methods that act for a worker take its
``Lease`` and are fenced: when the run's lease token is no longer that one (the
lease expired and another worker claimed the run), the method changes nothing
and raises ``LeaseLost``. JSON travels as ``bytes`` already encoded, so a store
never needs to know about user types. All times are epoch seconds (float).

Methods are coroutines that may be awaited from any event loop and any thread:
a store owns its own I/O thread or loop and hands results back.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Literal, Protocol

from ..clock import Clock
from ..models import EndStatus
from .dashboard_records import EventLinks, Inbox, RunDetail, RunSearch, SearchResult
from .flow_records import FlowRules, QueueRow
from .metrics_records import RunCounts
from .records import (
    AttemptRow,
    ChangeRow,
    ClaimBatch,
    ClaimedRun,
    EventOutcome,
    EventRow,
    EventWait,
    Filing,
    Handoff,
    InvokeWait,
    Lease,
    LeaseStatus,
    MessageRow,
    MessageWait,
    NewEvent,
    NewRun,
    ParkResult,
    RunFilter,
    RunHistory,
    RunRow,
    SignalOutcome,
    SignalWait,
    StepRow,
    StepSender,
    WaitCondition,
    WaitSpec,
    WorkflowConfig,
)
from .token_records import NewToken, TokenOutcome, TokenRow, TokenSecret

WakeListener = Callable[[], None]

__all__ = [
    "AttemptRow",
    "ChangeRow",
    "ClaimBatch",
    "ClaimedRun",
    "EventOutcome",
    "EventRow",
    "EventWait",
    "Filing",
    "Handoff",
    "InvokeWait",
    "Lease",
    "LeaseStatus",
    "MessageRow",
    "MessageWait",
    "NewEvent",
    "NewRun",
    "ParkResult",
    "RunFilter",
    "RunHistory",
    "RunRow",
    "SignalOutcome",
    "SignalWait",
    "StepRow",
    "StepSender",
    "Store",
    "WaitCondition",
    "WaitSpec",
    "WakeListener",
    "WorkflowConfig",
]


class Store(Protocol):
    clock: Clock
    """Where the store reads the time; the App's layers read it here too."""

    async def open(self) -> None:
        """Connect, apply migrations, refuse a schema from a newer version."""

    async def close(self) -> None:
        """Finish pending writes and release connections and threads."""

    async def bind_loop(self) -> None:
        """The calling event loop will make many calls (a worker's): let them run on
        it without hopping threads, where the store can. Undone by ``unbind_loop``
        from the same loop, before it closes."""

    async def unbind_loop(self) -> None:
        """Undo one ``bind_loop`` of the calling loop."""

    def add_wake_listener(self, listener: WakeListener) -> None:
        """Call ``listener`` (from any thread) whenever runs may have become due:
        after this process commits such a change, and when another process does."""

    def remove_wake_listener(self, listener: WakeListener) -> None:
        """Stop calling ``listener``."""

    async def wake_others(self) -> None:
        """Wake the workers of other processes (their wake listeners) now, with no
        change stored: a run of a capped or keyed workflow stopped executing here, and
        their claims may have been held back by it. A no-op where every commit wakes
        them already (SQLite)."""

    async def create_run(self, run: NewRun) -> tuple[str, bool]:
        """Insert a queued run due now; an existing id is left as it is.
        Returns the id and whether it was created."""

    starts_leased: bool
    """Whether ``App.start`` hands a run to a worker of its process with room at once
    (``start_leased``) rather than queue it for that worker's next claim: where a
    start is one brief write of its own (SQLite). PostgreSQL merges concurrent starts
    into one statement, which a leased start would leave."""

    wakes_leased: bool
    """Whether a signal or message sent on the loop of a worker of this process may
    hand the run it wakes to that worker in the delivery's own transaction
    (``Handoff``), which then executes it without a claim."""

    async def start_leased(
        self, run: NewRun, lease: Lease, lease_seconds: float
    ) -> tuple[str, bool, RunRow | None]:
        """Insert the run already leased with ``lease`` (as a claim would leave it) and
        return its record, for a worker of this process to execute at once. A workflow
        with flow rules is queued as by ``create_run`` (its record: None). Also the id
        and whether it was created (an existing id is left as it is: None)."""

    async def claim(
        self,
        workflows: Sequence[str],
        limit: int,
        lease_seconds: float,
        caps: Mapping[str, int] | None = None,
        skip_steps: Collection[str] = (),
        flows: Mapping[str, FlowRules] | None = None,
    ) -> ClaimBatch:
        """Lease up to ``limit`` due runs of ``workflows`` with fresh tokens, highest
        priority first, each with all its step records (none for the runs in
        ``skip_steps``, whose steps the worker holds already: their ``summary``
        instead, so a sleeping run is woken without another read). A workflow in ``caps``
        never has more than that many runs leased at once, counting every worker's;
        one in ``flows`` has its keyed limits, rate and debounce applied
        (``core.flow``). A parked run claimed at its deadline has its waits resolved
        as timed out in the same transaction; a run whose cancellation was requested
        is cancelled instead of returned."""

    async def queue_states(self, run_ids: Sequence[str]) -> dict[str, QueueRow]:
        """What holds each of these runs back, those queued (``core.flow``): its
        priority, its flow keys with how busy each concurrency key is, and how many
        due runs of a higher priority go first; one read."""

    async def renew(self, leases: Sequence[Lease], lease_seconds: float) -> LeaseStatus:
        """Extend the leases still held; report those lost and those asked to cancel."""

    async def step_summary(self, run_id: str) -> tuple[int, int]:
        """How many step records the run has, and the highest ``pos`` among them (0
        when none): enough to tell whether anything but its waits changed."""

    async def note_version(self, lease: Lease, version: str) -> None:
        """Record the code version of the attempt holding ``lease`` (fenced)."""

    async def save_step(self, lease: Lease, step: StepRow) -> bool:
        """Insert or replace a step record. Returns whether cancellation was requested
        (the caller must then start no further step: ``honor_cancel``)."""

    async def retry_step(self, lease: Lease, step: StepRow, due_at: float) -> bool:
        """Store a failed attempt and release the run until ``due_at``; when its
        cancellation is pending, end it cancelled instead. Returns whether it was
        cancelled."""

    async def release(self, lease: Lease) -> None:
        """Give the run back, due now, for another worker (this one is stopping)."""

    async def park(self, lease: Lease, wait: WaitSpec) -> ParkResult:
        """Record a wait step and its waiter and release the lease, unless the wait
        can be satisfied now (see ``ParkResult``)."""

    async def park_all(self, lease: Lease, waits: Sequence[WaitSpec]) -> dict[str, ParkResult]:
        """Park on the waits of several branches of the run at once, each with its own
        deadline (the run is due at the earliest), unless some can be answered now:
        then only those are stored, returned ``resolved``/``conflict``, and the run
        keeps its lease. A wait already stored waiting keeps its waiters."""

    async def send_signal(
        self,
        key: str,
        data: bytes,
        *,
        strict: bool,
        retention_seconds: float,
        sender: StepSender | None = None,
        trace: str | None = None,
        handoff: Handoff | None = None,
    ) -> SignalOutcome:
        """Deliver to the run waiting on ``key`` (its step completed with ``data`` and
        the sender's ``trace``, the run due now), else buffer for ``retention_seconds``
        unless ``strict``. Data that does not fit the waiter's JSON Schema is neither
        delivered nor buffered: ``PayloadInvalid`` for a client; for a ``sender``, its
        step is stored as failed with the error and the outcome is ``invalid``. The run
        woken is leased per ``handoff`` when it wants it (``Handoff``)."""

    async def sync_workflows(self, configs: Sequence[WorkflowConfig]) -> None:
        """Record what starts and cancels each of these workflows, replacing what was
        recorded for them before (other workflows are left as they are)."""

    async def send_event(
        self, event: NewEvent, *, dedupe_seconds: float, sender: StepSender | None = None
    ) -> EventOutcome:
        """Store the event; start a run of every workflow it triggers; resume every run
        whose wait matches it; cancel every run whose ``cancel_on`` matches it."""

    async def send_message(
        self,
        run_id: str,
        name: str,
        data: bytes,
        *,
        trace: str | None = None,
        handoff: Handoff | None = None,
    ) -> Literal["delivered", "queued", "not_found", "finished"]:
        """Append to the run's mailbox; hand it at once to the run's waiting
        ``message`` condition if one matches (oldest first stays the rule: a waiter
        exists only when no queued message matched it). When waiters take the name
        but the data fits none of their JSON Schemas: ``PayloadInvalid``, nothing
        stored. The run woken is leased per ``handoff`` when it wants it."""

    async def list_messages(self, run_id: str) -> list[MessageRow]:
        """The run's mailbox, oldest first, consumed or not."""

    async def finish(
        self, lease: Lease, status: EndStatus, output: bytes | None, error: bytes | None
    ) -> EndStatus:
        """End the run as completed, failed or cancelled, and resume the parent that
        invoked it. A pending cancellation wins: the run ends ``cancelled`` with its
        reason, never ``completed``. Returns the status the run ended with."""

    async def honor_cancel(self, lease: Lease) -> None:
        """End the run as cancelled with the reason its cancellation was requested with."""

    async def cancel(
        self, run_id: str, reason: bytes | None, *, children: bool = True
    ) -> RunRow | None:
        """Cancel a queued or parked run at once (its waiters removed in the same
        transaction); flag a leased one to stop at its next step. No-op on an
        ended run. With ``children``, the same for every run it invoked that has not
        ended, recursively, in the same transaction. Returns the run after, or None
        when there is no such run."""

    async def get_run(self, run_id: str) -> tuple[RunRow, list[StepRow]] | None:
        """A run and all its step records, in one read."""

    async def get_runs(self, run_ids: Sequence[str]) -> list[tuple[RunRow, list[StepRow]]]:
        """Many runs with their step records, in one read (missing ids left out)."""

    async def run_row(self, run_id: str) -> RunRow | None:
        """The run's own record without its steps (None: no such run); one read."""

    async def run_version(self, run_id: str) -> str | None:
        """A token that changes whenever the run, one of its step records or its
        mailbox changes (None: no such run); one cheap read."""

    async def list_runs(
        self,
        *,
        status: str | None,
        workflow: str | None,
        limit: int,
        cursor: int | None,
        version: str | None = None,
    ) -> list[RunRow]:
        """Runs newest first (by ``seq``), those with ``seq < cursor`` when given."""

    async def list_events(
        self, *, name: str | None, limit: int, cursor: int | None
    ) -> list[EventRow]:
        """Stored events newest first (by ``seq``), those with ``seq < cursor`` when given."""

    async def purge_expired(self, events_before: float) -> int:
        """Delete buffered signals past their retention and events received before
        ``events_before``. Returns how many rows went."""

    async def run_history(self, run_id: str) -> RunHistory:
        """The failed attempts of the run's steps and what was done to it, oldest first."""

    async def retry_run(self, run_id: str, detail: bytes) -> RunRow | None:
        """Queue a failed or cancelled run again, from its failed (or cancelled) steps,
        which go with their retry counts; completed steps stay. ``RunStateError`` for a
        run in another state; None for no such run."""

    async def fork_run(
        self, run_id: str, from_step: str, new: NewRun, detail: bytes
    ) -> RunRow | None:
        """Create ``new`` with copies of the ended run's steps recorded before
        ``from_step``. ``RunStateError`` if the run has not ended, ``ValueError`` if it
        recorded no such step; None for no such run."""

    async def find_runs(self, where: RunFilter, after: int, limit: int) -> list[tuple[int, str]]:
        """``(seq, id)`` of the runs matching ``where`` with ``seq > after``, oldest first."""

    async def count_runs(self, where: RunFilter) -> int:
        """How many runs match ``where``."""

    async def purge_runs(
        self,
        *,
        cutoffs: Mapping[str, float] | None = None,
        before: float | None = None,
        workflow: str | None = None,
        only: Sequence[str] | None = None,
        limit: int = 500,
        dry_run: bool = False,
    ) -> list[str]:
        """Delete up to ``limit`` ended runs with all kept for them, one purger at a
        time: those of each workflow in ``cutoffs`` that ended before its cutoff, or
        those (of ``workflow``, or any) that ended before ``before``, or the runs in
        ``only``. Never a run that has not ended. The ids chosen (``dry_run``: they
        are only listed)."""

    # -- the dashboard's reads (store/core/dashboard_reads.py) ---------------------------

    async def dashboard_key(self, name: str, offer: str) -> str:
        """The key stored under ``name``; ``offer`` is stored first when there is none."""

    async def search_runs(
        self, search: RunSearch, *, limit: int, cursor: int | None, counts: bool = True
    ) -> SearchResult:
        """Runs matching ``search`` newest first (``seq < cursor`` when given) and, with
        ``counts``, how many match in each status."""

    async def get_event(self, event_id: str) -> EventRow | None:
        """The stored event with this id, or None."""

    async def event_links(self, since: float, until: float) -> EventLinks:
        """What events received from ``since`` to ``until`` may have started (runs with a
        trigger created then) and resumed (wait steps ended since then)."""

    async def run_detail(self, run_id: str) -> RunDetail | None:
        """The run's trigger, the run that invoked it and those it invoked, its waiting
        steps' specs and pending conditions (None: no such run)."""

    async def inbox(self, limit: int = 500) -> Inbox:
        """The waits on people: every typed condition (a signal, message or token wait
        with a schema) of a run not ended, soonest deadline first and those without
        one last, at most ``limit``; and how many waiting steps have one. Read from an
        index of typed waiters only: ended runs and untyped waits cost nothing."""

    async def inbox_count(self) -> int:
        """How many waiting steps wait on people (``inbox().total``), in one count of
        that index."""

    # -- metrics (store/core/metrics_reads.py) ---------------------------------------------

    async def run_counts(self) -> RunCounts:
        """Queued and running runs by workflow, parked runs by workflow and wait kind
        with the oldest of each; from indexes that hold no ended run, in one read."""

    # -- callback tokens (store/core/tokens.py) -------------------------------------------

    async def token_secrets(self, offer: str) -> list[TokenSecret]:
        """The secrets that verify token links now, the one that signs new links first;
        ``offer`` is stored as that one when the store has none yet."""

    async def rotate_token_secret(self, new: str, grace_seconds: float) -> None:
        """Sign new links with ``new``; the secret it replaces verifies for
        ``grace_seconds`` more, and secrets past their grace are deleted."""

    async def create_token(self, lease: Lease, token: NewToken, step: StepRow) -> bool:
        """Store the token with the step that created it (fenced; an id already stored
        is left as it is). Returns whether cancellation was requested."""

    async def get_token(self, token_id: str) -> TokenRow | None:
        """The token with its run's workflow and status, or None."""

    async def complete_token(
        self, token_id: str, data: bytes, *, trace: str | None = None
    ) -> TokenOutcome:
        """Complete the token with ``data`` and deliver it (with the sender's
        ``trace``) to the run's wait on it, if parked; or change nothing and say why
        (used, expired, run ended, not found). Data that does not fit the token's
        schema raises ``PayloadInvalid``."""

    # -- cron schedules (store/core/schedules.py) ------------------------------------------

    async def schedule_marks(self) -> dict[str, float]:
        """For each cron workflow the store has seen, the time up to which its slots
        were dealt with (started or skipped)."""

    async def start_slots(self, workflow: str, runs: Sequence[NewRun], covered: float) -> list[str]:
        """Create ``runs`` (an id that exists is left as it is) and move the workflow's
        mark to ``covered`` unless it is further already, in one transaction. The ids
        of the runs created."""
