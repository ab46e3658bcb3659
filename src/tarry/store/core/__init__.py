"""Every decision the store makes, written once for both databases.

``CoreStore`` implements the Store protocol by running one core operation per
method in one transaction; an adapter supplies only ``_transact`` (how it runs
a transaction: SQLite's writer thread, PostgreSQL's pools and retries) and its
lifecycle, and may put a faster path in front of a method where its database
allows one (PostgreSQL's one-statement claim, step write, start and end).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from ...clock import Clock, SystemClock
from ...models import EndStatus
from ..base import (
    ClaimBatch,
    EventOutcome,
    EventRow,
    Handoff,
    Lease,
    LeaseStatus,
    MessageRow,
    NewEvent,
    NewRun,
    ParkResult,
    RunFilter,
    RunHistory,
    RunRow,
    SignalOutcome,
    StepRow,
    StepSender,
    WaitSpec,
    WorkflowConfig,
)
from ..dashboard_records import EventLinks, Inbox, RunDetail, RunSearch, SearchResult
from ..flow_records import FlowRules, QueueRow
from ..metrics_records import RunCounts
from . import (
    claims,
    dashboard_reads,
    delivery,
    ends,
    fence,
    flow,
    metrics_reads,
    operate,
    runs,
    waits,
)
from .configs import WorkflowConfigs
from .delivery import MessageStatus
from .port import Tx
from .schedules import ScheduleStore
from .tokens import TokenStore

T = TypeVar("T")
Body = Callable[[Tx], Coroutine[Any, Any, T]]


class CoreStore(ScheduleStore, TokenStore, ABC):
    starts_leased = False
    wakes_leased = True

    def __init__(self, clock: Clock | None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._configs = WorkflowConfigs()

    @abstractmethod
    def _transact(self, body: Body[T], *, idempotent: bool = True) -> Awaitable[T]:
        """Run ``body`` in one transaction. ``idempotent``: safe to run again after a
        commit whose outcome is unknown (where the adapter can lose one)."""

    def _read(self, body: Body[T]) -> Awaitable[T]:
        """Run ``body``, which only reads, in one transaction."""
        return self._transact(body)

    def _brief(self, body: Body[T], *, idempotent: bool = True) -> Awaitable[T]:
        """Run ``body``, a small write that touches one run (its start, a claim's
        lease, a step's result, a park, an end, a signal or message to it), in one
        transaction: an adapter may commit these where it is cheapest. By default,
        as any other."""
        return self._transact(body, idempotent=idempotent)

    async def create_run(self, run: NewRun) -> tuple[str, bool]:
        return await self._brief(partial(runs.start_run, run=run, configs=self._configs))

    async def start_leased(
        self, run: NewRun, lease: Lease, lease_seconds: float
    ) -> tuple[str, bool, RunRow | None]:
        return await self._brief(
            partial(runs.start_leased, run=run, lease=lease, lease_seconds=lease_seconds,
                    configs=self._configs)
        )  # fmt: skip

    async def sync_workflows(self, configs: Sequence[WorkflowConfig]) -> None:
        self._configs.forget()  # before and after: a start in between reads the store
        await self._transact(partial(runs.sync_workflows, configs=list(configs)))
        self._configs.forget()

    async def claim(
        self,
        workflows: Sequence[str],
        limit: int,
        lease_seconds: float,
        caps: Mapping[str, int] | None = None,
        skip_steps: Collection[str] = (),
        flows: Mapping[str, FlowRules] | None = None,
    ) -> ClaimBatch:
        return await self._brief(
            partial(claims.claim, workflows=workflows, limit=limit,
                    lease_seconds=lease_seconds, caps=caps, skip_steps=skip_steps, flows=flows)
        )  # fmt: skip

    async def queue_states(self, run_ids: Sequence[str]) -> dict[str, QueueRow]:
        return await self._read(partial(flow.queue_states, run_ids=run_ids))

    async def step_summary(self, run_id: str) -> tuple[int, int]:
        return await self._read(partial(claims.step_summary, run_id=run_id))

    async def renew(self, leases: Sequence[Lease], lease_seconds: float) -> LeaseStatus:
        if not leases:
            return LeaseStatus()
        return await self._transact(
            partial(claims.renew, leases=leases, lease_seconds=lease_seconds)
        )

    async def note_version(self, lease: Lease, version: str) -> None:
        await self._brief(partial(fence.note_version, lease=lease, version=version))

    async def save_step(self, lease: Lease, step: StepRow) -> bool:
        return await self._brief(partial(fence.save_step, lease=lease, step=step))

    async def retry_step(self, lease: Lease, step: StepRow, due_at: float) -> bool:
        return await self._brief(partial(ends.retry_step, lease=lease, step=step, due_at=due_at))

    async def release(self, lease: Lease) -> None:
        await self._brief(partial(ends.release, lease=lease))

    async def park(self, lease: Lease, wait: WaitSpec) -> ParkResult:
        return await self._brief(partial(waits.park, lease=lease, wait=wait))

    async def park_all(self, lease: Lease, waits_: Sequence[WaitSpec]) -> dict[str, ParkResult]:
        return await self._brief(partial(waits.park_all, lease=lease, waits=list(waits_)))

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
        body = partial(
            delivery.send_signal, key=key, data=data, strict=strict,
            retention_seconds=retention_seconds, sender=sender, trace=trace, handoff=handoff,
        )  # fmt: skip
        # A step's send is fenced and memoized in the same transaction, so repeating
        # it after an unknown commit finds the step; a client's send could buffer twice.
        # Brief: a signal key has one waiter at most.
        return await self._brief(body, idempotent=sender is not None)

    async def send_event(
        self, event: NewEvent, *, dedupe_seconds: float, sender: StepSender | None = None
    ) -> EventOutcome:
        body = partial(
            delivery.send_event, event=event, dedupe_seconds=dedupe_seconds, sender=sender
        )
        # After an unknown commit an event with an id is found again as a duplicate,
        # and a step's event as its stored step; any other could be stored twice.
        return await self._transact(body, idempotent=event.dedupe or sender is not None)

    async def send_message(
        self,
        run_id: str,
        name: str,
        data: bytes,
        *,
        trace: str | None = None,
        handoff: Handoff | None = None,
    ) -> MessageStatus:
        body = partial(
            delivery.send_message, run_id=run_id, name=name, data=data, trace=trace,
            handoff=handoff,
        )  # fmt: skip
        # Repeating a send whose commit went unanswered could queue it twice.
        return await self._brief(body, idempotent=False)

    async def list_messages(self, run_id: str) -> list[MessageRow]:
        return await self._read(partial(claims.list_messages, run_id=run_id))

    async def finish(
        self, lease: Lease, status: EndStatus, output: bytes | None, error: bytes | None
    ) -> EndStatus:
        return await self._brief(
            partial(ends.finish, lease=lease, status=status, output=output, error=error)
        )

    async def honor_cancel(self, lease: Lease) -> None:
        await self._brief(partial(ends.honor_cancel, lease=lease))

    async def cancel(
        self, run_id: str, reason: bytes | None, *, children: bool = True
    ) -> RunRow | None:
        return await self._transact(
            partial(ends.cancel, run_id=run_id, reason=reason, children=children)
        )

    async def get_run(self, run_id: str) -> tuple[RunRow, list[StepRow]] | None:
        return await self._read(partial(claims.get_run, run_id=run_id))

    async def get_runs(self, run_ids: Sequence[str]) -> list[tuple[RunRow, list[StepRow]]]:
        return await self._read(partial(claims.get_runs, run_ids=run_ids))

    async def run_version(self, run_id: str) -> str | None:
        return await self._read(partial(claims.run_version, run_id=run_id))

    async def run_row(self, run_id: str) -> RunRow | None:
        return await self._read(partial(claims.get_run_row, run_id=run_id))

    async def list_runs(
        self,
        *,
        status: str | None,
        workflow: str | None,
        limit: int,
        cursor: int | None,
        version: str | None = None,
    ) -> list[RunRow]:
        return await self._read(
            partial(claims.list_runs, status=status, workflow=workflow, limit=limit,
                    cursor=cursor, version=version)
        )  # fmt: skip

    async def list_events(
        self, *, name: str | None, limit: int, cursor: int | None
    ) -> list[EventRow]:
        return await self._read(partial(claims.list_events, name=name, limit=limit, cursor=cursor))

    async def purge_expired(self, events_before: float) -> int:
        return await self._transact(partial(claims.purge_expired, events_before=events_before))

    async def run_history(self, run_id: str) -> RunHistory:
        return await self._read(partial(operate.run_history, run_id=run_id))

    async def retry_run(self, run_id: str, detail: bytes) -> RunRow | None:
        return await self._transact(partial(operate.retry_run, run_id=run_id, detail=detail))

    async def fork_run(
        self, run_id: str, from_step: str, new: NewRun, detail: bytes
    ) -> RunRow | None:
        return await self._transact(
            partial(operate.fork_run, run_id=run_id, from_step=from_step, new=new, detail=detail)
        )

    async def find_runs(self, where: RunFilter, after: int, limit: int) -> list[tuple[int, str]]:
        return await self._read(partial(operate.find_runs, where=where, after=after, limit=limit))

    async def count_runs(self, where: RunFilter) -> int:
        return await self._read(partial(operate.count_runs, where=where))

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
        return await self._transact(
            partial(operate.purge_runs, cutoffs=cutoffs, before=before, workflow=workflow,
                    only=only, limit=limit, dry_run=dry_run)
        )  # fmt: skip

    # -- the dashboard's reads ---------------------------------------------------------

    async def dashboard_key(self, name: str, offer: str) -> str:
        return await self._transact(partial(dashboard_reads.dashboard_key, name=name, offer=offer))

    async def search_runs(
        self, search: RunSearch, *, limit: int, cursor: int | None, counts: bool = True
    ) -> SearchResult:
        return await self._read(
            partial(dashboard_reads.search_runs, search=search, limit=limit, cursor=cursor,
                    counts=counts)
        )  # fmt: skip

    async def get_event(self, event_id: str) -> EventRow | None:
        return await self._read(partial(dashboard_reads.get_event, event_id=event_id))

    async def event_links(self, since: float, until: float) -> EventLinks:
        return await self._read(partial(dashboard_reads.event_links, since=since, until=until))

    async def run_detail(self, run_id: str) -> RunDetail | None:
        return await self._read(partial(dashboard_reads.run_detail, run_id=run_id))

    async def inbox(self, limit: int = 500) -> Inbox:
        return await self._read(partial(dashboard_reads.inbox, limit=limit))

    async def inbox_count(self) -> int:
        return await self._read(dashboard_reads.inbox_count)

    async def run_counts(self) -> RunCounts:
        return await self._read(metrics_reads.run_counts)
