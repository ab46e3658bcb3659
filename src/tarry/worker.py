"""The claim loop: lease due runs, execute them, renew leases, sleep until woken.

An idle worker sleeps until the earliest ``due_at`` among its workflows' runs
or until the store calls its wake listener (an in-process commit at once;
another process's commit via the store's own mechanism), never on a fixed
polling interval of its own. It sleeps on its clock, so moving a
``ManualClock`` past that time wakes it as the wall clock would.

The worker depends on what the App hands it (settings, registry, store,
clock and the process's ``Local``), never on the App. Each claimed run gets an
``Attempt`` registered with ``Local`` for as long as it executes here, so a
cancel asked in this process reaches it at once.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from . import observe
from .attempt import Attempt
from .clock import Clock
from .errors import NeverIdle, StoreError, WorkerCrash
from .execution import execute
from .local import Local
from .metrics.claim_latency import claim_latency
from .registry import Registry
from .scheduler import Scheduler
from .settings import Settings
from .slot_wake import SlotWake
from .step_threads import StepThreads
from .sticky import Sleepers
from .store.base import ClaimBatch, ClaimedRun, Store
from .store.flow_records import FlowRules
from .worker_starts import StartsHere
from .worker_sticky import SleepsHere

log = logging.getLogger("tarry")

_PURGE_EVERY = 300.0
"""Clock seconds between purges of expired signals and events."""
STICKY_FROM = 24
"""Step records a run must have for its handler to stay asleep after it parks: below
that, loading and replaying them costs less than the check and the extra write of a
resume in place."""
_PURGE_BATCH = 500
_PURGE_BATCHES = 4
"""Ended runs deleted per transaction, and transactions per turn of the claim loop."""
_MIN_PAUSE = 0.002
"""Real seconds to wait before claiming again runs that are due but were locked."""
_SLOW_EXECUTION = 10.0
"""Real seconds ``settle`` waits on an execution before saying which runs it waits for."""
_BACKOFF_FIRST = 1.0
_BACKOFF_CAP = 10.0
"""Real seconds between attempts while the store fails (pacing, not engine time)."""


class Worker(SleepsHere, StartsHere):
    def __init__(
        self,
        *,
        settings: Settings,
        registry: Registry,
        store: Store,
        clock: Clock,
        local: Local,
        concurrency: int = 32,
        doubles: Mapping[str, Mapping[str, Callable[..., Any]]] | None = None,
        sticky: int = 1000,
        sticky_from: int = STICKY_FROM,
    ) -> None:
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        self.settings = settings
        self.registry = registry
        self.store = store
        self.clock = clock
        self.local = local
        self.concurrency = concurrency
        self.doubles = {} if doubles is None else doubles
        """Per workflow, step ids whose function is replaced (``tarry.testing``)."""
        self._counting: collections.Counter[str] | None = None
        """Executions started per run while ``settle`` counts them."""
        self._sleepers = Sleepers(sticky)
        self._sticky_from = sticky_from
        """Runs asleep here since they parked, resumed without replay if claimed here."""
        self._forget: dict[str, tuple[asyncio.Task[None], Callable[[], None]]] = {}
        self._waking: set[asyncio.Task[None]] = set()
        self._moved = asyncio.Event()
        """Set when an execution leaves ``_active`` without ending (it fell asleep)."""
        self._next_purge = 0.0
        self._scheduler = Scheduler(registry, store)
        """Starts the runs of cron slots; its next slot bounds how long the loop sleeps."""
        """Clock time of the next purge of expired signals, events and ended runs."""
        self._claiming = 0
        """Claims in flight: runs leased by the store and not yet in ``_active``."""
        self._flows: dict[str, FlowRules] = {}
        """Keyed limits, rates and debounces of the workflows that have them."""
        self._held: frozenset[str] = frozenset()
        """Workflows with a concurrency cap or key: their ends free a slot elsewhere."""
        self._slots = SlotWake(store)
        self._active: dict[str, tuple[asyncio.Task[None], Attempt]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # Plain-``def`` handlers and sync step functions get a pool each, sized to the
        # concurrency: a handler thread blocked on its step must never hold the thread
        # that step needs.
        self._handlers: concurrent.futures.ThreadPoolExecutor | None = None
        self._steps: StepThreads | None = None
        self._init_starts()

    def _on_wake(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(self._wake.set)

    def stop(self) -> None:
        """Ask the loop to stop claiming and return; safe from any thread, and before
        ``run`` has begun (it then returns at once)."""
        self._stopping = True
        self._on_wake()

    async def run(self) -> None:
        store = self.store
        self._loop = asyncio.get_running_loop()
        workflows = list(self.registry)
        caps = self.registry.caps()
        self._flows = self.registry.flows()
        self._held = frozenset(caps) | {n for n, rules in self._flows.items() if rules.limits}
        self._takes = frozenset(workflows) - set(caps) - set(self._flows)
        await store.bind_loop()
        store.add_wake_listener(self._on_wake)
        self.local.add_taker(self)
        heartbeat = asyncio.create_task(self._heartbeat(), name="tarry-heartbeat")
        backoff = _BACKOFF_FIRST
        try:
            while not self._stopping:
                self._wake.clear()
                until: float | None = None  # clock time
                pause: float | None = None  # real seconds, instead of ``until``
                free = self._free()
                try:
                    now = self.clock.now()
                    await self._purge_if_due(now)
                    next_slot = await self._scheduler.tick(now)  # cron slots come due
                    if free > 0 and workflows:
                        batch = await self._claim(workflows, free, caps)
                        if len(batch.runs) == free:
                            continue  # there may be more due; claim again when a slot frees
                        if batch.next_due is not None and batch.next_due <= now:
                            # Due but not claimed (locked by another worker's claim):
                            # look again shortly rather than spin.
                            pause = _MIN_PAUSE
                        else:
                            until = batch.next_due
                    # Asleep, the worker still wakes for its next purge.
                    until = self._next_purge if until is None else min(until, self._next_purge)
                    if next_slot is not None:
                        until = min(until, next_slot)
                    backoff = _BACKOFF_FIRST
                except StoreError as exc:
                    log.warning("worker: the store failed (%s); retrying in %.1f s", exc, backoff)
                    pause, backoff = backoff, min(backoff * 2, _BACKOFF_CAP)
                if pause is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), pause)
                else:
                    await self.clock.wait(self._wake, until)
        finally:
            self.local.remove_taker(self)
            store.remove_wake_listener(self._on_wake)
            heartbeat.cancel()
            await self._shutdown()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            for pool in (self._handlers, self._steps):
                if pool is not None:
                    pool.shutdown(wait=False, cancel_futures=True)
            self._handlers = self._steps = None
            await store.unbind_loop()

    async def _purge_if_due(self, now: float) -> None:
        if now >= self._next_purge:
            self._next_purge = await self._purge(now)

    async def _purge(self, now: float) -> float:
        """Delete expired signals and events, and ended runs past their retention, a
        few batches at a time; when next to purge."""
        await self.store.purge_expired(now - self.settings.event_retention)
        retention = self.registry.retention(self.settings.retention)
        if not retention:
            return now + _PURGE_EVERY
        cutoffs = {name: now - seconds for name, seconds in retention.items()}
        for _ in range(_PURGE_BATCHES):
            if len(await self.store.purge_runs(cutoffs=cutoffs, limit=_PURGE_BATCH)) < _PURGE_BATCH:
                break
        else:
            return now  # more to delete: again after the next claim
        return now + min(_PURGE_EVERY, min(retention.values()) / 2)

    async def _claim(self, workflows: list[str], free: int, caps: dict[str, int]) -> ClaimBatch:
        """Claim up to ``free`` due runs and start executing them."""
        self._claiming += 1
        queued = self.local.queued  # starts queued here before now: this claim sees them
        try:
            asleep = frozenset(self._sleepers.ids())  # claimed without their steps
            batch = await self.store.claim(
                workflows, free, self.settings.lease, caps, skip_steps=asleep, flows=self._flows
            )
            for claimed in batch.runs:
                run_id = claimed.run.id
                if self._free() <= 0:  # a woken run handed off here took the slot meanwhile
                    self._hand_back(claimed.lease)
                    continue
                if run_id in asleep and run_id not in self._sleepers.ids():
                    # Unwound since (its window passed): replay it, with its steps.
                    claimed = await self._with_steps(claimed)
                self._start(claimed)
        finally:
            self._claiming -= 1
        self._backlog = len(batch.runs) >= free
        if not self._backlog:
            self._queued_seen = queued
        return batch

    async def settle(self, max_executions: int | None = None) -> float | None:
        """Execute every run due now, and every run those executions make due now, until
        none is left and none executes; the earliest time a run is due next.

        For a driver that moves a ``ManualClock`` (``tarry.testing``): it runs alongside
        ``run()`` on the same loop, and counts the claims ``run()`` has in flight, so it
        never reports quiet while a claimed run is on its way to executing. More than
        ``max_executions`` started before that raises ``NeverIdle``."""
        workflows = list(self.registry)
        caps = self.registry.caps()
        self._flows = self.registry.flows()
        counts: collections.Counter[str] = collections.Counter()
        self._counting = counts
        try:
            while True:
                await self._drain(max_executions)
                free = self._free()
                next_slot = await self._scheduler.tick(self.clock.now())
                batch = await self._claim(workflows, free, caps) if workflows else None
                if batch is None:
                    return None
                if batch.runs or self._active or self._claiming:
                    continue
                if batch.next_due is not None and batch.next_due <= self.clock.now():
                    await asyncio.sleep(_MIN_PAUSE)  # due but locked by another claim
                    continue
                await self._purge_if_due(self.clock.now())
                if next_slot is not None and (batch.next_due is None or next_slot < batch.next_due):
                    return next_slot
                return batch.next_due
        finally:
            self._counting = None

    async def _drain(self, max_executions: int | None) -> None:
        """Wait until no execution is in flight here, however long its steps take; raise
        ``NeverIdle`` once more than ``max_executions`` have started while counting."""
        while True:
            counts = self._counting
            if max_executions is not None and counts and counts.total() > max_executions:
                raise NeverIdle(_never_idle(counts, max_executions))
            if not (self._active or self._claiming):
                return
            tasks: list[asyncio.Future[Any]] = [task for task, _ in self._active.values()]
            if not tasks:
                await asyncio.sleep(0)
                continue
            self._moved.clear()
            moved = asyncio.ensure_future(self._moved.wait())  # a run fell asleep
            try:
                done, _ = await asyncio.wait(
                    [*tasks, moved], timeout=_SLOW_EXECUTION, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                moved.cancel()
            if not done:
                names = ", ".join(sorted(self._active))
                log.warning(
                    "still executing after %.0f s of real time: %s (waiting for them)",
                    _SLOW_EXECUTION,
                    names,
                )

    def _pool(self, name: str) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(
            self.concurrency, thread_name_prefix=f"tarry-{name}"
        )

    def _start(self, claimed: ClaimedRun) -> None:
        sleeper = self._sleepers.take(claimed.run.id)
        if sleeper is not None:  # asleep here since it parked: wake it, or replay
            self._run(claimed.run.id, sleeper.task, sleeper.attempt)
            self._told_claimed(claimed, asleep=True)
            waking = asyncio.ensure_future(self._resume(claimed, sleeper))
            self._waking.add(waking)
            waking.add_done_callback(self._waking.discard)
            return
        workflow = self.registry[claimed.run.workflow]
        if self._steps is None:
            self._steps = StepThreads(self.concurrency, "tarry-step")
        if not workflow.is_async and self._handlers is None:
            self._handlers = self._pool("handler")
        attempt = Attempt(
            claimed,
            retries=workflow.retries,
            settings=self.settings,
            store=self.store,
            clock=self.clock,
            local=self.local,
            threads=self._steps,
            doubles=self.doubles.get(workflow.id, {}),
            version_of=self.registry.version_of,
        )
        run_id = claimed.run.id
        attempt.begin_span(resumed=bool(claimed.steps))
        if workflow.is_async and self._sleepers.limit > 0:
            attempt.sleep = functools.partial(self._sleep, run_id)
        # Named by the run: a name given is not formatted (Task-N) for every task.
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(
            execute(attempt, workflow, self._handlers or _NO_THREADS), name=run_id
        )
        self._run(run_id, task, attempt)
        self._told_claimed(claimed, asleep=False)

        def done(_task: asyncio.Task[None]) -> None:
            if self._forget.get(run_id, (None,))[0] is task:
                self._forget.pop(run_id)[1]()
            if not task.cancelled() and isinstance(task.exception(), WorkerCrash):
                log.info("run %s: its execution stopped as if the worker had crashed", run_id)
            if self._active.get(run_id, (None,))[0] is task:
                del self._active[run_id]
            self._sleepers.drop(run_id, task)
            self._wake.set()
            if claimed.run.workflow in self._held:
                self._slots.freed()

        task.add_done_callback(done)

    def _told_claimed(self, claimed: ClaimedRun, *, asleep: bool) -> None:
        if observe.wanted(observe.DEBUG):
            run = claimed.run
            observe.emit("claimed", observe.DEBUG, "run %s (%s) claimed", run.id, run.workflow,
                         args=(run.id, run.workflow), steps=len(claimed.steps), asleep=asleep,
                         claim_latency=claim_latency(claimed, asleep))  # fmt: skip

    def _run(self, run_id: str, task: asyncio.Task[None], attempt: Attempt) -> None:
        """The run executes here: count it, and let this process's cancels reach it."""
        self._active[run_id] = (task, attempt)
        self._forget[run_id] = (task, self.local.executing(run_id, attempt.request_cancel))
        if self._counting is not None:
            self._counting[run_id] += 1

    async def _heartbeat(self) -> None:
        """Renew the leases of the runs executing here every third of a lease, in
        clock time (the store expires leases on the same clock)."""
        interval = self.settings.lease / 3
        while True:
            await self.clock.sleep_until(self.clock.now() + interval)
            self._sleepers.expire(self.clock.now() - self.settings.sticky_for)
            if self._active:
                await self._renew_active()

    async def _renew_active(self) -> None:
        """One renewal of the leases of the runs executing here: stop those whose lease
        was taken over, tell those asked to cancel."""
        leases = [attempt.lease for _, attempt in self._active.values()]
        try:
            status = await self.store.renew(leases, self.settings.lease)
        except Exception:
            log.warning("lease renewal failed; retrying", exc_info=True)
            return
        renewed = {lease.run_id: lease for lease in leases}
        for run_id in status.lost:
            entry = self._active.get(run_id)
            # Lost is about the lease renewed: a run woken meanwhile under a new lease
            # (sticky execution) is not stopped for the lease it slept under.
            if entry is not None and entry[1].lease is renewed[run_id] and not entry[1].releasing:
                log.warning("run %s: lease lost; stopping this attempt", run_id)
                entry[0].cancel()
        for run_id in status.cancel_requested:
            entry = self._active.get(run_id)
            if entry is not None:
                entry[1].request_cancel()

    async def _shutdown(self) -> None:
        """Stop executions still in flight and hand their runs back at once, rather
        than leaving them for the lease to expire."""
        await self._sleepers.close()
        await self._slots.close()
        entries = list(self._active.values())
        for task, _ in entries:
            task.cancel()
        for task, attempt in entries:
            with contextlib.suppress(asyncio.CancelledError, Exception, WorkerCrash):
                await task
            with contextlib.suppress(Exception):  # LeaseLost: it parked or ended meanwhile
                await self.store.release(attempt.lease)
        self._active.clear()


def _never_idle(counts: collections.Counter[str], limit: int) -> str:
    busiest = ", ".join(f"{run_id} ({n}x)" for run_id, n in counts.most_common(5))
    return (
        f"{counts.total():,} executions of {len(counts):,} runs started without every run "
        f"parking or ending (max_executions={limit:,}); the runs executed most: {busiest}. "
        "A workflow that "
        "loops without a wait, or runs that keep waking one another, never settle"
    )


class _NoThreads(concurrent.futures.Executor):
    """Stands in for the handler thread pool when only async handlers run."""


_NO_THREADS = _NoThreads()
