"""The embedded store: every Store operation as SQL on one sqlite3 connection.

The operations run on the writer thread of ``GroupCommitWriter`` (WAL mode,
group commit, a poller for other processes' commits); here is only what each
one does, in one transaction.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Literal, TypeVar

import orjson

from ..errors import ConfigError, LeaseLost, SchemaTooNew
from ..ids import new_id
from .base import (
    ClaimBatch,
    ClaimedRun,
    EventOutcome,
    EventRow,
    EventWait,
    Filing,
    Lease,
    LeaseStatus,
    MessageRow,
    NewEvent,
    NewRun,
    ParkResult,
    RunRow,
    SignalOutcome,
    StepRow,
    StepSender,
    WaitCondition,
    WaitSpec,
    WakeListener,
    WorkflowConfig,
)
from .matching import leaf_keys, matches, resolve_filing, trigger_of
from .rows import (
    RUN_COLUMNS,
    child_json,
    error_json,
    indexed,
    message_json,
    run_row,
    step_params,
    step_row,
)
from .sql import load_migrations, load_queries
from .sqlite_writer import GroupCommitWriter

T = TypeVar("T")
Q = load_queries("sqlite")
MIGRATIONS = load_migrations("sqlite")
SCHEMA_VERSION = MIGRATIONS[-1][0]


def sqlite_path(url: str) -> str:
    """``sqlite:///relative/path`` or ``sqlite:////absolute/path`` (SQLAlchemy's form)."""
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"not a SQLite URL: {url!r}; expected sqlite:///path/to/file.db")
    path = url[len("sqlite:///") :]
    if not path or path == ":memory:":
        raise ConfigError(
            f"SQLite URL {url!r} names no file; tarry needs a file shared by its connections, "
            "e.g. sqlite:///./.tarry/tarry.db"
        )
    return path


class SQLiteStore:
    def __init__(
        self,
        url: str,
        *,
        synchronous: str = "FULL",
        poll_interval: float = 0.05,
        batch_limit: int = 1024,
    ) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._io = GroupCommitWriter(
            url,
            self.path,
            prepare=self._migrate,
            synchronous=synchronous,
            poll_interval=poll_interval,
            batch_limit=batch_limit,
        )

    async def open(self) -> None:
        await self._io.open()

    async def close(self) -> None:
        await self._io.close()

    async def bind_loop(self) -> None:
        """Nothing to do: results already reach each caller's loop in one hand-off."""

    async def unbind_loop(self) -> None:
        """Nothing to undo."""

    def add_wake_listener(self, listener: WakeListener) -> None:
        self._io.add_wake_listener(listener)

    def remove_wake_listener(self, listener: WakeListener) -> None:
        self._io.remove_wake_listener(listener)

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._io.call(fn)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS tarry_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            row = conn.execute(
                "SELECT value FROM tarry_meta WHERE key = 'schema_version'"
            ).fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"the store {self.url!r} has schema version {current}, but this tarry "
                    f"knows versions up to {SCHEMA_VERSION}; upgrade tarry to open it"
                )
            for version, sql in MIGRATIONS:
                if version > current:
                    for statement in sql.split(";"):
                        if statement.strip():
                            conn.execute(statement)
            conn.execute(
                "INSERT INTO tarry_meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(max(current, SCHEMA_VERSION)),),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- helpers that run on the writer thread ----------------------------------------

    def _fence(self, conn: sqlite3.Connection, lease: Lease, now: float) -> bool:
        row = conn.execute(Q["fence"], {"now": now, "run_id": lease.run_id, "token": lease.token})
        found = row.fetchone()
        if found is None:
            raise LeaseLost(
                f"the lease on run {lease.run_id!r} was taken over by another worker; "
                "this worker's write was rejected and the newer attempt is kept"
            )
        return bool(found[0])

    def _resolve_wait(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        step_key: str,
        status: str,
        output: bytes | None,
        error: bytes | None,
        now: float,
        index: int | None = None,
    ) -> None:
        """Deliver to one wait: its waiters go, its step gets ``output`` (as
        ``{"index", "value"}`` for the condition ``index`` of a wait_for_any), and
        the run is due now."""
        if index is not None and status == "completed":
            output = indexed(index, output or b"null")
        conn.execute(Q["delete_step_waiters"], {"run_id": run_id, "step_key": step_key})
        conn.execute(
            Q["resolve_step"],
            {
                "status": status,
                "output": output,
                "error": error,
                "now": now,
                "run_id": run_id,
                "key": step_key,
            },
        )
        conn.execute(Q["wake_run"], {"run_id": run_id, "now": now})
        self._io.wake_pending = True

    def _cancel_or_flag(
        self, conn: sqlite3.Connection, run_id: str, now: float, run: RunRow | None = None
    ) -> bool:
        """Cancel a run that no worker holds at once; leave a leased one flagged to stop
        at its next step. Returns whether it was cancelled now."""
        if run is None:
            found = conn.execute(Q["select_run"], {"id": run_id}).fetchone()
            if found is None:
                return False
            run = run_row(found)
            if run.status in ("completed", "failed", "cancelled"):
                return False
            if not run.cancel_requested:
                reason = error_json("Cancelled", "cancelled by an event")
                conn.execute(Q["request_cancel"], {"reason": reason, "now": now, "run_id": run_id})
        leased = run.status == "running" and run.due_at is not None and run.due_at > now
        if leased:
            return False
        self._cancel_now(conn, run_id, now)
        return True

    def _cancel_now(self, conn: sqlite3.Connection, run_id: str, now: float) -> None:
        conn.execute(Q["delete_run_waiters"], {"run_id": run_id})
        conn.execute(Q["cancel_waiting_steps"], {"run_id": run_id, "now": now})
        conn.execute(Q["end_run_with_cancel_reason"], {"run_id": run_id, "now": now})
        self._notify_parent(conn, run_id, now)

    def _notify_parent(self, conn: sqlite3.Connection, run_id: str, now: float) -> None:
        """A run has ended: resume the run whose ``invoke`` waits for it, if any."""
        waiter = conn.execute(Q["invoke_waiter"], {"key": run_id}).fetchone()
        if waiter is None:
            return
        child = run_row(conn.execute(Q["select_run"], {"id": run_id}).fetchone())
        result = child_json(child.status, child.output, child.error)
        self._resolve_wait(conn, waiter[0], waiter[1], "completed", result, None, now, waiter[2])

    # -- runs ------------------------------------------------------------------------

    def _insert_run(self, conn: sqlite3.Connection, run: NewRun, now: float) -> bool:
        cur = conn.execute(
            Q["insert_run"],
            {
                "id": run.id,
                "workflow": run.workflow,
                "payload": run.payload,
                "trigger": run.trigger,
                "parent": run.parent,
                "now": now,
            },
        )
        if not cur.rowcount:
            return False
        self._io.wake_pending = True
        row = conn.execute(Q["workflow_cancel_on"], {"id": run.workflow}).fetchone()
        if row is not None and row[0] != b"[]":
            trigger = trigger_of(run.workflow, run.payload, run.trigger)
            for item in orjson.loads(row[0]):
                filing = resolve_filing(Filing(**item), trigger)
                self._insert_waiter(
                    conn, run.id, "", WaitCondition("event", event=EventWait(filing, None)), None,
                    None, kind="cancel",
                )  # fmt: skip
        return True

    async def create_run(self, run: NewRun) -> tuple[str, bool]:
        def op(conn: sqlite3.Connection) -> tuple[str, bool]:
            return run.id, self._insert_run(conn, run, time.time())

        return await self._call(op)

    async def sync_workflows(self, configs: Sequence[WorkflowConfig]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            now = time.time()
            for config in configs:
                cancel_on = orjson.dumps([asdict(f) for f in config.cancel_on])
                conn.execute(
                    Q["upsert_workflow"], {"id": config.id, "cancel_on": cancel_on, "now": now}
                )
                conn.execute(Q["delete_workflow_triggers"], {"workflow": config.id})
                for event, expr in config.triggers:
                    conn.execute(
                        Q["insert_trigger"], {"workflow": config.id, "event": event, "expr": expr}
                    )

        await self._call(op)

    async def send_event(
        self, event: NewEvent, *, dedupe_seconds: float, sender: StepSender | None = None
    ) -> EventOutcome:
        def op(conn: sqlite3.Connection) -> EventOutcome:
            now = time.time()
            if sender is not None:
                self._fence(conn, sender.lease, now)
            outcome = self._send_event(conn, event, dedupe_seconds, now)
            if sender is not None:
                output = orjson.dumps([outcome.event_id])
                step = StepRow(
                    sender.step_key, "send_event", "completed", output, None, 1,
                    sender.started_at, now,
                )  # fmt: skip
                conn.execute(Q["upsert_step"], step_params(sender.lease.run_id, step))
            return outcome

        return await self._call(op)

    def _send_event(
        self, conn: sqlite3.Connection, event: NewEvent, dedupe_seconds: float, now: float
    ) -> EventOutcome:
        if event.dedupe:
            seen = conn.execute(Q["event_by_id"], {"id": event.id}).fetchone()
            if seen is not None:
                if seen[0] > now - dedupe_seconds:
                    return EventOutcome(event.id, duplicate=True)
                conn.execute(Q["delete_event"], {"id": event.id})
        conn.execute(
            Q["insert_event"], {"id": event.id, "name": event.name, "data": event.data, "ts": now}
        )
        data = orjson.loads(event.data)
        incoming = {"name": event.name, "data": data, "id": event.id, "ts": now}
        incoming_json = orjson.dumps(incoming)
        started: list[str] = []
        for workflow, expr in conn.execute(Q["triggers_for_event"], {"event": event.name}):
            if expr is None or matches(None, None, expr, incoming, incoming):
                run = NewRun(new_id(), workflow, event.data, incoming_json)
                if self._insert_run(conn, run, now):
                    started.append(run.id)
        # Candidates: the waiters filed under one of the event's own (path, value)
        # keys, plus those with no indexable equality. Never a scan of all waiters.
        candidates: dict[int, tuple[str, str, str, str | None, int | None]] = {}
        for path, value in leaf_keys(incoming):
            for row in conn.execute(
                Q["waiters_by_value"], {"name": event.name, "path": path, "value": value}
            ):
                candidates[row[0]] = row[1:]
        for row in conn.execute(Q["waiters_unindexed"], {"name": event.name}):
            candidates[row[0]] = row[1:]
        resumed: list[str] = []
        cancelled: list[str] = []
        done: set[str] = set(started)
        for waiter_id in sorted(candidates):
            run_id, step_key, kind, expr, index = candidates[waiter_id]
            if run_id in done:
                continue
            trigger = None
            if expr is not None:
                found = conn.execute(Q["run_trigger"], {"id": run_id}).fetchone()
                trigger = trigger_of(*found) if found is not None else None
                if not matches(None, None, expr, trigger, incoming):
                    continue
            done.add(run_id)
            if kind == "event":
                self._resolve_wait(
                    conn, run_id, step_key, "completed", incoming_json, None, now, index
                )
                resumed.append(run_id)
            elif self._cancel_or_flag(conn, run_id, now):
                cancelled.append(run_id)
        return EventOutcome(event.id, False, tuple(started), tuple(resumed), tuple(cancelled))

    async def claim(
        self,
        workflows: Sequence[str],
        limit: int,
        lease_seconds: float,
        caps: Mapping[str, int] | None = None,
    ) -> ClaimBatch:
        def op(conn: sqlite3.Connection) -> ClaimBatch:
            now = time.time()
            room = {
                name: cap - conn.execute(Q["count_leased"], {"workflow": name}).fetchone()[0]
                for name, cap in (caps or {}).items()
                if name in workflows
            }
            eligible = [name for name in workflows if room.get(name, 1) > 0]
            # A workflow at its cap can still have expired leases taken over: that
            # leaves its count of leased runs as it was, and a crashed worker's runs
            # must not keep it stuck.
            saturated = orjson.dumps([name for name in room if room[name] <= 0])
            fetch = limit * 2 if room else limit
            due = conn.execute(
                Q["due_runs"], {"now": now, "workflows": orjson.dumps(eligible), "limit": fetch}
            ).fetchall()
            if room:
                due += conn.execute(
                    Q["due_expired_leases"], {"now": now, "workflows": saturated, "limit": limit}
                ).fetchall()
            leases: dict[str, Lease] = {}
            for run_id, workflow, status, cancel_requested in due:
                if len(leases) == limit:
                    break
                if workflow in room and status != "running":
                    if room[workflow] <= 0:
                        continue
                    room[workflow] -= 1
                if cancel_requested:
                    self._cancel_now(conn, run_id, now)
                    continue
                if status == "waiting":
                    conn.execute(Q["expire_waiting_steps"], {"run_id": run_id, "now": now})
                    conn.execute(Q["delete_wait_waiters"], {"run_id": run_id})
                lease = Lease(run_id, os.urandom(12).hex())
                conn.execute(
                    Q["lease_run"],
                    {
                        "token": lease.token,
                        "lease_until": now + lease_seconds,
                        "now": now,
                        "id": run_id,
                    },
                )
                leases[run_id] = lease
            claimed: list[ClaimedRun] = []
            if leases:
                ids = orjson.dumps(list(leases))
                steps: dict[str, list[StepRow]] = {run_id: [] for run_id in leases}
                for row in conn.execute(Q["select_steps_by_run_ids"], {"ids": ids}):
                    steps[row[0]].append(step_row(row))
                for row in conn.execute(Q["select_runs_by_ids"], {"ids": ids}):
                    run = run_row(row)
                    claimed.append(ClaimedRun(run, steps[run.id], leases[run.id]))
            # Workflows at their cap wait for a run to end (a wake-up), or for one of
            # their leases to expire.
            open_names = orjson.dumps([n for n in eligible if room.get(n, 1) > 0])
            next_due = conn.execute(Q["next_due"], {"workflows": open_names}).fetchone()[0]
            if room:
                full = orjson.dumps([n for n in room if room[n] <= 0])
                expiry = conn.execute(Q["next_lease_expiry"], {"workflows": full}).fetchone()[0]
                if expiry is not None and (next_due is None or expiry < next_due):
                    next_due = expiry
            return ClaimBatch(claimed, next_due)

        return await self._call(op)

    async def renew(self, leases: Sequence[Lease], lease_seconds: float) -> LeaseStatus:
        def op(conn: sqlite3.Connection) -> LeaseStatus:
            status = LeaseStatus()
            until = time.time() + lease_seconds
            for lease in leases:
                row = conn.execute(
                    Q["renew_lease"],
                    {"lease_until": until, "run_id": lease.run_id, "token": lease.token},
                ).fetchone()
                if row is None:
                    status.lost.add(lease.run_id)
                elif row[0]:
                    status.cancel_requested.add(lease.run_id)
            return status

        return await self._call(op)

    async def save_step(self, lease: Lease, step: StepRow) -> bool:
        params = step_params(lease.run_id, step)

        def op(conn: sqlite3.Connection) -> bool:
            cancel_requested = self._fence(conn, lease, time.time())
            conn.execute(Q["upsert_step"], params)
            return cancel_requested

        return await self._call(op)

    async def retry_step(self, lease: Lease, step: StepRow, due_at: float) -> None:
        params = step_params(lease.run_id, step)

        def op(conn: sqlite3.Connection) -> None:
            now = time.time()
            self._fence(conn, lease, now)
            conn.execute(Q["upsert_step"], params)
            conn.execute(
                Q["release_run"],
                {
                    "status": "queued",
                    "due_at": due_at,
                    "waiting_for": None,
                    "now": now,
                    "run_id": lease.run_id,
                },
            )
            self._io.wake_pending = True

        await self._call(op)

    async def release(self, lease: Lease) -> None:
        def op(conn: sqlite3.Connection) -> None:
            now = time.time()
            self._fence(conn, lease, now)
            conn.execute(
                Q["release_run"],
                {
                    "status": "queued",
                    "due_at": now,
                    "waiting_for": None,
                    "now": now,
                    "run_id": lease.run_id,
                },
            )
            self._io.wake_pending = True

        await self._call(op)

    async def park(self, lease: Lease, wait: WaitSpec) -> ParkResult:
        def op(conn: sqlite3.Connection) -> ParkResult:
            now = time.time()
            self._fence(conn, lease, now)
            started = wait.started_at or now

            def settle(status: str, output: bytes | None, error: bytes | None) -> StepRow:
                ended = None if status == "waiting" else now
                step = StepRow(wait.step_key, wait.kind, status, output, error, 1, started, ended)
                conn.execute(Q["upsert_step"], step_params(lease.run_id, step))
                return step

            for index, cond in enumerate(wait.conditions):
                if cond.kind == "signal":
                    holder = conn.execute(Q["signal_waiter"], {"key": cond.key}).fetchone()
                    if holder is not None and holder[0] != lease.run_id:
                        if cond.on_conflict == "fail":
                            error = error_json(
                                "SignalConflict",
                                f"run {holder[0]!r} already waits on signal {cond.key!r}; "
                                'pass on_conflict="replace" to take the key over',
                                other_run=holder[0],
                            )
                            return ParkResult("conflict", settle("failed", None, error), holder[0])
                        note = error_json(
                            "Replaced",
                            f"the wait on signal {cond.key!r} was taken over by run "
                            f"{lease.run_id!r}",
                            replaced_by=lease.run_id,
                        )
                        self._resolve_wait(conn, holder[0], holder[1], "timed_out", None, note, now)
                found = self._available(conn, lease.run_id, wait.step_key, cond, now)
                if found is not None:
                    output = indexed(index, found) if wait.indexed else found
                    return ParkResult("resolved", settle("completed", output, None))
            if wait.deadline is not None and wait.deadline <= now:
                status = "completed" if wait.kind == "sleep" else "timed_out"
                return ParkResult("resolved", settle(status, None, None))
            settle("waiting", None, None)
            for index, cond in enumerate(wait.conditions):
                self._insert_waiter(
                    conn, lease.run_id, wait.step_key, cond, wait.deadline,
                    index if wait.indexed else None,
                )  # fmt: skip
            conn.execute(
                Q["release_run"],
                {
                    "status": "waiting",
                    "due_at": wait.deadline,
                    "waiting_for": wait.waiting_for,
                    "now": now,
                    "run_id": lease.run_id,
                },
            )
            if wait.deadline is not None:
                self._io.wake_pending = True  # an idle worker may need an earlier alarm
            return ParkResult("parked")

        return await self._call(op)

    def _available(
        self, conn: sqlite3.Connection, run_id: str, step_key: str, cond: WaitCondition, now: float
    ) -> bytes | None:
        """What already satisfies ``cond`` (consumed here), or None."""
        if cond.kind == "signal":
            buffered = conn.execute(
                Q["first_buffered_signal"], {"key": cond.key, "now": now}
            ).fetchone()
            if buffered is None:
                return None
            conn.execute(Q["delete_signal"], {"id": buffered[0]})
            data: bytes = buffered[1]
            return data
        if cond.kind == "event":
            assert cond.event is not None
            return None if cond.event.since is None else self._look_back(conn, run_id, cond.event)
        if cond.kind == "message":
            row = conn.execute(Q["first_message"], {"run_id": run_id, "name": cond.key}).fetchone()
            if row is None:
                return None
            conn.execute(Q["consume_message"], {"seq": row[0], "step_key": step_key, "now": now})
            return message_json(row[1], row[2], row[3])
        assert cond.child is not None
        self._insert_run(conn, cond.child, now)
        child = conn.execute(Q["select_run"], {"id": cond.child.id}).fetchone()
        child_run = run_row(child)
        if child_run.status in ("completed", "failed", "cancelled"):
            return child_json(child_run.status, child_run.output, child_run.error)
        return None

    def _insert_waiter(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        step_key: str,
        cond: WaitCondition,
        expires_at: float | None,
        index: int | None,
        kind: str | None = None,
    ) -> None:
        filing = cond.event.filing if cond.event is not None else None
        conn.execute(
            Q["insert_waiter"],
            {
                "run_id": run_id,
                "step_key": step_key,
                "kind": kind or cond.kind,
                "key": filing.event if filing is not None else cond.key,
                "expires_at": expires_at,
                "path": filing.path if filing is not None else None,
                "value": filing.value if filing is not None else None,
                "expr": filing.expr if filing is not None else None,
                "idx": index,
            },
        )

    def _look_back(self, conn: sqlite3.Connection, run_id: str, wait: EventWait) -> bytes | None:
        """The oldest stored event that satisfies the wait, if any: the lookback."""
        filing = wait.filing
        trigger = None
        if filing.expr is not None:
            found = conn.execute(Q["run_trigger"], {"id": run_id}).fetchone()
            trigger = trigger_of(*found)
        skip = set(wait.exclude)
        for event_id, name, data, ts in conn.execute(
            Q["events_since"], {"name": filing.event, "since": wait.since}
        ):
            if event_id in skip:
                continue
            incoming = {"name": name, "data": orjson.loads(data), "id": event_id, "ts": ts}
            if matches(filing.path, filing.value, filing.expr, trigger, incoming):
                return orjson.dumps(incoming)
        return None

    async def send_signal(
        self,
        key: str,
        data: bytes,
        *,
        strict: bool,
        retention_seconds: float,
        sender: StepSender | None = None,
    ) -> SignalOutcome:
        def op(conn: sqlite3.Connection) -> SignalOutcome:
            now = time.time()
            if sender is not None:
                self._fence(conn, sender.lease, now)
            waiter = conn.execute(Q["signal_waiter"], {"key": key}).fetchone()
            if waiter is not None:
                self._resolve_wait(
                    conn, waiter[0], waiter[1], "completed", data, None, now, waiter[2]
                )
                outcome = SignalOutcome("delivered", waiter[0])
            elif strict:
                return SignalOutcome("not_found")
            else:
                conn.execute(
                    Q["buffer_signal"],
                    {"key": key, "data": data, "now": now, "expires_at": now + retention_seconds},
                )
                outcome = SignalOutcome("buffered")
            if sender is not None:
                output = orjson.dumps({"status": outcome.status, "run_id": outcome.run_id})
                step = StepRow(
                    sender.step_key,
                    "send_signal",
                    "completed",
                    output,
                    None,
                    1,
                    sender.started_at,
                    now,
                )
                conn.execute(Q["upsert_step"], step_params(sender.lease.run_id, step))
            return outcome

        return await self._call(op)

    async def send_message(
        self, run_id: str, name: str, data: bytes
    ) -> Literal["delivered", "queued", "not_found", "finished"]:
        def op(conn: sqlite3.Connection) -> Literal["delivered", "queued", "not_found", "finished"]:
            now = time.time()
            row = conn.execute(Q["run_status"], {"id": run_id}).fetchone()
            if row is None:
                return "not_found"
            if row[0] in ("completed", "failed", "cancelled"):
                return "finished"
            seq = conn.execute(
                Q["insert_message"], {"run_id": run_id, "name": name, "data": data, "now": now}
            ).fetchone()[0]
            waiter = conn.execute(Q["message_waiter"], {"run_id": run_id, "name": name}).fetchone()
            if waiter is None:
                return "queued"
            step_key, index = waiter
            conn.execute(Q["consume_message"], {"seq": seq, "step_key": step_key, "now": now})
            message = message_json(name, data, now)
            self._resolve_wait(conn, run_id, step_key, "completed", message, None, now, index)
            return "delivered"

        return await self._call(op)

    async def list_messages(self, run_id: str) -> list[MessageRow]:
        def op(conn: sqlite3.Connection) -> list[MessageRow]:
            return [
                MessageRow(*row) for row in conn.execute(Q["list_messages"], {"run_id": run_id})
            ]

        return await self._call(op)

    async def finish(
        self, lease: Lease, status: str, output: bytes | None, error: bytes | None
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            now = time.time()
            self._fence(conn, lease, now)
            conn.execute(Q["delete_run_waiters"], {"run_id": lease.run_id})
            conn.execute(
                Q["end_run"],
                {
                    "status": status,
                    "output": output,
                    "error": error,
                    "now": now,
                    "run_id": lease.run_id,
                },
            )
            self._notify_parent(conn, lease.run_id, now)

        await self._call(op)

    async def honor_cancel(self, lease: Lease) -> None:
        def op(conn: sqlite3.Connection) -> None:
            now = time.time()
            self._fence(conn, lease, now)
            self._cancel_now(conn, lease.run_id, now)

        await self._call(op)

    async def cancel(self, run_id: str, reason: bytes | None) -> RunRow | None:
        def op(conn: sqlite3.Connection) -> RunRow | None:
            now = time.time()
            row = conn.execute(Q["select_run"], {"id": run_id}).fetchone()
            if row is None:
                return None
            run = run_row(row)
            if run.status in ("completed", "failed", "cancelled"):
                return run
            conn.execute(Q["request_cancel"], {"reason": reason, "now": now, "run_id": run_id})
            self._cancel_or_flag(conn, run_id, now, run)
            return run_row(conn.execute(Q["select_run"], {"id": run_id}).fetchone())

        return await self._call(op)

    async def get_run(self, run_id: str) -> tuple[RunRow, list[StepRow]] | None:
        def op(conn: sqlite3.Connection) -> tuple[RunRow, list[StepRow]] | None:
            row = conn.execute(Q["select_run"], {"id": run_id}).fetchone()
            if row is None:
                return None
            steps = [step_row(r) for r in conn.execute(Q["select_steps"], {"id": run_id})]
            return run_row(row), steps

        return await self._call(op)

    async def list_runs(
        self, *, status: str | None, workflow: str | None, limit: int, cursor: int | None
    ) -> list[RunRow]:
        clauses, params = [], []
        for column, value in (("status", status), ("workflow", workflow), ("seq <", cursor)):
            if value is not None:
                clauses.append(f"{column} {'' if '<' in column else '='} ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {RUN_COLUMNS} FROM runs {where} ORDER BY seq DESC LIMIT ?"

        def op(conn: sqlite3.Connection) -> list[RunRow]:
            return [run_row(row) for row in conn.execute(sql, (*params, limit))]

        return await self._call(op)

    async def list_events(
        self, *, name: str | None, limit: int, cursor: int | None
    ) -> list[EventRow]:
        def op(conn: sqlite3.Connection) -> list[EventRow]:
            rows = conn.execute(Q["list_events"], {"name": name, "cursor": cursor, "limit": limit})
            return [EventRow(*row) for row in rows]

        return await self._call(op)

    async def purge_expired(self, events_before: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            signals = conn.execute(Q["purge_signals"], {"now": time.time()}).rowcount
            events = conn.execute(Q["purge_events"], {"before": events_before}).rowcount
            return int(signals + events)

        return await self._call(op)
