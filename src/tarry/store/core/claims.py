"""Claiming due runs, renewing their leases, and the reads that take no lease.

A claim leases due runs with fresh tokens. A workflow with a concurrency cap is
counted under its lock, held to the commit, so claims in other processes count
after this one's leases; at its cap it can still have expired leases taken
over, which leaves its count as it was (a crashed worker's runs must not keep
it stuck). A parked run claimed at its deadline has its wait resolved as timed
out in the same transaction; a run whose cancellation was requested is
cancelled instead of returned. Due runs are taken highest priority first, then
earliest due. A workflow with flow rules (keyed limits, a rate, a debounce) is
claimed under its lock too, its due runs passed through its gate (``flow``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ...ids import random_hex
from ..base import ClaimBatch, ClaimedRun, EventRow, Lease, LeaseStatus, MessageRow, RunRow, StepRow
from ..flow_records import FlowRules
from ..rows import RUN_COLUMNS, run_row, step_row
from . import flow
from .ends import cancel_now
from .port import Row, Tx


def new_token() -> str:
    return random_hex(12)


async def steps_of(tx: Tx, run_ids: Sequence[str]) -> defaultdict[str, list[StepRow]]:
    """Every step record of these runs, in one read (none for any other)."""
    steps: defaultdict[str, list[StepRow]] = defaultdict(list)
    if run_ids:
        for row in await tx.all("select_steps_by_run_ids", {"ids": tx.array(run_ids)}):
            steps[row[0]].append(step_row(row))
    return steps


async def summaries_of(tx: Tx, run_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Each run's step count and highest place (``step_summary``), in one read."""
    if not run_ids:
        return {}
    rows = await tx.all("step_summaries_by_run_ids", {"ids": tx.array(run_ids)})
    return {row[0]: (int(row[1]), int(row[2] or 0)) for row in rows}


async def claim(
    tx: Tx,
    workflows: Sequence[str],
    limit: int,
    lease_seconds: float,
    caps: Mapping[str, int] | None,
    skip_steps: Collection[str] = (),
    flows: Mapping[str, FlowRules] | None = None,
) -> ClaimBatch:
    names = list(dict.fromkeys(workflows))
    capped = sorted(name for name in (caps or {}) if name in names)
    gated = {name: rules for name, rules in (flows or {}).items() if name in names}
    now = tx.now
    room: dict[str, int] = {}
    for name in sorted({*capped, *gated}):
        await tx.lock("cap", name)
        if name in capped:
            found = await tx.one("count_leased", {"workflow": name})
            assert found is not None and caps is not None
            room[name] = caps[name] - int(found[0])
    free = [name for name in names if name not in room and name not in gated]
    due: list[Row] = []
    if free and limit > 0:
        params = {"now": now, "workflows": tx.array(free), "limit": limit}
        due += await tx.all("due_runs", params)
    gates: dict[str, flow.Gate] = {}
    for name in sorted({*capped, *gated}):
        if room.get(name, 1) <= 0:
            query = "due_expired_leases"
        else:
            query = "due_gated_runs" if name in gated else "due_runs"
        scan = flow.scan_size(limit) if name in gated else limit
        params = {"now": now, "workflows": tx.array([name]), "limit": scan}
        rows = await tx.all(query, params)
        if name in gated:
            gates[name] = await flow.open_gate(tx, name, gated[name], rows, scan)
            rows = [row[:6] for row in rows]
        due += rows
    due.sort(key=lambda row: (-row[5], row[4]))
    live: list[str] = []
    waiting: list[str] = []
    due_since: dict[str, float] = {}
    for run_id, workflow, status, cancel_requested, due_at, _priority in due:
        if len(live) == limit:
            break
        if cancel_requested:
            await cancel_now(tx, run_id)
            continue
        if workflow in room and status != "running" and room[workflow] <= 0:
            continue
        gate = gates.get(workflow)
        if gate is not None and not gate.admit(run_id, status):
            continue
        if workflow in room and status != "running":
            room[workflow] -= 1
        live.append(run_id)
        due_since[run_id] = due_at
        if status == "waiting":
            waiting.append(run_id)
    if waiting:
        await tx.run("expire_waiting_steps", {"ids": tx.array(waiting), "now": now})
        await tx.run("delete_wait_waiters_of_runs", {"ids": tx.array(waiting), "now": now})
    claimed: list[ClaimedRun] = []
    if live:
        tokens = [new_token() for _ in live]
        rows = await tx.all(
            "lease_runs",
            {"ids": tx.array(live), "tokens": tx.array(tokens),
             "lease_until": now + lease_seconds, "now": now},
        )  # fmt: skip
        runs = {row[1]: run_row(row) for row in rows}
        steps = await steps_of(tx, [run_id for run_id in live if run_id not in skip_steps])
        summaries = await summaries_of(tx, [run_id for run_id in live if run_id in skip_steps])
        claimed = [
            ClaimedRun(runs[run_id], steps[run_id], Lease(run_id, token), due_since[run_id],
                       summaries.get(run_id))
            for run_id, token in zip(live, tokens, strict=True)
        ]  # fmt: skip
    for gate in gates.values():
        await gate.settle(tx, set(live))
    # Workflows at their cap wait for a run to end (a wake-up), not for a time,
    # except for the expiry of their leases; so do those whose due runs wait for a
    # concurrency key, except for a run due later.
    if gates and len(live) == limit:
        # Full: the worker claims again at once, whatever is due next.
        return ClaimBatch(claimed, now)
    saturated = [name for name in capped if room[name] <= 0]
    blocked = [
        name for name, gate in gates.items()
        if gate.blocked and not gate.truncated and name not in saturated
    ]  # fmt: skip
    found = await tx.one(
        "next_due",
        {"workflows": tx.array([n for n in names if n not in saturated and n not in blocked]),
         "saturated": tx.array(saturated), "blocked": tx.array(blocked), "now": now},
    )  # fmt: skip
    return ClaimBatch(claimed, None if found is None else found[0])


async def renew(tx: Tx, leases: Sequence[Lease], lease_seconds: float) -> LeaseStatus:
    ordered = sorted(leases, key=lambda lease: lease.run_id)
    rows = await tx.all(
        "renew_leases",
        {"ids": tx.array([lease.run_id for lease in ordered]),
         "tokens": tx.array([lease.token for lease in ordered]),
         "lease_until": tx.now + lease_seconds},
    )  # fmt: skip
    kept = {row[0]: bool(row[1]) for row in rows}
    return LeaseStatus(
        lost={lease.run_id for lease in ordered if lease.run_id not in kept},
        cancel_requested={run_id for run_id, cancel in kept.items() if cancel},
    )


# -- reads ------------------------------------------------------------------------------


async def get_run(tx: Tx, run_id: str) -> tuple[RunRow, list[StepRow]] | None:
    row = await tx.one("select_run", {"id": run_id})
    if row is None:
        return None
    return run_row(row), [step_row(r) for r in await tx.all("select_steps", {"id": run_id})]


async def get_run_row(tx: Tx, run_id: str) -> RunRow | None:
    row = await tx.one("select_run", {"id": run_id})
    return None if row is None else run_row(row)


async def step_summary(tx: Tx, run_id: str) -> tuple[int, int]:
    row = await tx.one("step_summary", {"run_id": run_id})
    return (0, 0) if row is None else (int(row[0]), int(row[1] or 0))


async def get_runs(tx: Tx, run_ids: Sequence[str]) -> list[tuple[RunRow, list[StepRow]]]:
    """These runs (those that exist) with all their step records, in two reads."""
    if not run_ids:
        return []
    rows = await tx.all("select_runs_by_ids", {"ids": tx.array(run_ids)})
    steps = await steps_of(tx, [row[1] for row in rows])
    return [(run_row(row), steps[row[1]]) for row in rows]


async def run_version(tx: Tx, run_id: str) -> str | None:
    row = await tx.one("run_version", {"id": run_id})
    return None if row is None else "|".join(str(value) for value in row)


async def list_runs(
    tx: Tx,
    status: str | None,
    workflow: str | None,
    limit: int,
    cursor: int | None,
    version: str | None = None,
) -> list[RunRow]:
    # Built here rather than with NULL-able parameters, so each filter keeps its index.
    clauses: list[str] = []
    params: dict[str, Any] = {"status": status, "workflow": workflow, "cursor": cursor,
                              "version": version}  # fmt: skip
    for column, test in (("status", "status = :status"), ("workflow", "workflow = :workflow"),
                         ("version", "version = :version"),
                         ("cursor", "seq < :cursor")):  # fmt: skip
        if params[column] is not None:
            clauses.append(test)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT {RUN_COLUMNS} FROM runs {where} ORDER BY seq DESC LIMIT :limit"
    return [run_row(row) for row in await tx.select(sql, {**params, "limit": limit})]


async def list_events(tx: Tx, name: str | None, limit: int, cursor: int | None) -> list[EventRow]:
    rows = await tx.all("list_events", {"name": name, "cursor": cursor, "limit": limit})
    return [EventRow(row[0], row[1], row[2], bytes(row[3]), row[4]) for row in rows]


async def list_messages(tx: Tx, run_id: str) -> list[MessageRow]:
    rows = await tx.all("list_messages", {"run_id": run_id})
    return [MessageRow(row[0], bytes(row[1]), row[2], row[3]) for row in rows]


async def purge_expired(tx: Tx, events_before: float) -> int:
    signals = await tx.run("purge_signals", {"now": tx.now})
    await tx.run("purge_rate_buckets", {"now": tx.now})
    await tx.run("purge_event_keys", {"before": events_before})
    events = await tx.run("purge_events", {"before": events_before})
    return signals + events
