"""Flow control in the store: run keys, the gate a claim passes runs through, debounce.

Keys. When a run of a workflow with flow rules is created, each rule's key (CEL over
the run's trigger) is evaluated once and filed in ``run_keys``: ``c:<expr>`` for a
concurrency limit, ``r:<workflow>`` for its rate and ``d:<workflow>`` for its
debounce. A key that fails on the run's data files the run under ``null`` and says
why in the lifecycle log, rather than leaving the run stuck. The rate and debounce
rows go when the run first starts: a resume after a wait is not a start (it was
let through once, and holding a run that has done half its work behind new ones
helps nobody), and a later start opens a new debounce window.

The gate. A claim of a workflow with rules holds the workflow's lock (``cap``) to
its commit, so claims in every process see one another's leases. It reads the
concurrency keys of the workflow's executing runs, counted (from the runs that
execute, however many runs ever held a key), and lets a due run through only while
each of its keys is under its limit. A rate is GCRA, one row per key (its
theoretical arrival time, TAT): a run may first start once ``now >= TAT - tolerance``,
and moves TAT on by ``per / limit``. A run its rate holds back is pushed to the time
its turn comes, so nothing polls; one its concurrency key holds back stays due, and
its worker waits for a run to end (a wake-up) or a lease to expire (``blocked``).

Debounce. A start for a debounced workflow takes its key's lock and looks for the
run the key is gathering (queued, never started): found, that run takes the new
start's data and trigger and is due ``period`` from now (at most ``max_wait`` after
it was created); else a new run is created, due ``period`` from now.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ... import observe
from ...expressions import compile_expression
from ..base import NewRun
from ..flow_records import DebounceRule, FlowRules, KeyHold, QueueRow
from ..matching import canonical, index_value, trigger_of
from .port import Row, Tx

NULL_KEY = "null"
"""The key a run is filed under when its key expression fails on its data."""
UNKEYED = ""
"""The one key of a rate or debounce without ``key=``: the whole workflow."""
SCAN_MIN, SCAN_MAX = 32, 1000
"""Due runs a claim reads (and, on PostgreSQL, locks) per gated workflow: a quarter
more than it has slots for, so that a few runs behind a busy key do not leave slots
empty; when it read as many as it may and still has room, the worker claims again
at once rather than wait (``Gate.truncated``)."""


def rate_id(workflow: str) -> str:
    return f"r:{workflow}"


def debounce_id(workflow: str) -> str:
    return f"d:{workflow}"


def scan_size(limit: int) -> int:
    return max(SCAN_MIN, min(SCAN_MAX, limit + limit // 4))


def key_value(source: str | None, trigger: Mapping[str, Any]) -> tuple[str, str | None]:
    """The run's value of a key expression, as the index spells it, and why it failed
    (None: it did not)."""
    if source is None:
        return UNKEYED, None
    # Compiled once, cached by source; its value, not ``evaluate``'s true-or-not.
    value, failed = compile_expression(source).value(trigger)
    if failed is not None:
        return NULL_KEY, failed
    return index_value(canonical(value)), None


def run_keys(run: NewRun, rules: FlowRules) -> dict[str, str]:
    """Every key the run is filed under, by rule (``KeyLimit.id``, ``rate_id``, ...)."""
    trigger = trigger_of(run.workflow, run.payload, run.trigger)
    wanted: list[tuple[str, str | None, str]] = [
        (limit.id, limit.key, f"concurrency key {limit.key!r}") for limit in rules.limits
    ]
    if rules.rate is not None:
        wanted.append((rate_id(run.workflow), rules.rate.key, f"rate key {rules.rate.key!r}"))
    if rules.debounce is not None:
        wanted.append(
            (debounce_id(run.workflow), rules.debounce.key, f"debounce key {rules.debounce.key!r}")
        )
    keys: dict[str, str] = {}
    for limit_id, source, what in wanted:
        keys[limit_id], failed = key_value(source, trigger)
        if failed is not None and observe.wanted(observe.WARNING):
            observe.emit("flow_key_failed", observe.WARNING,
                         "run %s (%s): its %s failed on its trigger (%s); it is filed under "
                         "the key null", run.id, run.workflow,
                         args=(run.id, run.workflow, what, failed), key=source,
                         error=failed)  # fmt: skip
    return keys


async def file_keys(tx: Tx, run: NewRun, rules: FlowRules) -> None:
    for limit_id, value in run_keys(run, rules).items():
        await tx.run("insert_run_key", {"run_id": run.id, "limit_id": limit_id, "value": value})


def first_due(rules: FlowRules | None, now: float) -> float:
    """When a new run of the workflow is first due: now, or when its debounce
    window closes."""
    if rules is None or rules.debounce is None:
        return now
    return now + rules.debounce.period


async def gather(tx: Tx, run: NewRun, rules: FlowRules) -> str | None:
    """A start for a debounced workflow: the run its key is gathering, now carrying
    this start's data (None: there is none; create ``run``, under the lock taken
    here, held to the commit)."""
    debounce = rules.debounce
    assert debounce is not None
    keys = run_keys(run, rules)
    limit_id = debounce_id(run.workflow)
    value = keys[limit_id]
    await tx.lock("flow", f"{limit_id}\n{value}")
    found = await tx.one("pending_debounce", {"limit_id": limit_id, "value": value})
    if found is None:
        return None
    run_id, created_at = found[0], found[1]
    await tx.one("lock_run", {"id": run_id})  # a claim taking it now goes first
    params = {"run_id": run_id, "limit_id": limit_id}
    if not any(row[0] == limit_id for row in await tx.all("run_keys_of_run", params)):
        return None  # claimed meanwhile: it started, this start opens a new window
    changed = await tx.run(
        "debounce_run",
        {"id": run_id, "payload": run.payload, "trigger": run.trigger,
         "due_at": debounced_due(debounce, created_at, tx.now), "now": tx.now,
         "trace": run.trace, "priority": rules.priority if run.priority is None
         else run.priority},
    )  # fmt: skip
    if not changed:
        return None
    await tx.run("delete_run_keys", {"run_id": run_id})
    for key_id, key in keys.items():
        await tx.run("insert_run_key", {"run_id": run_id, "limit_id": key_id, "value": key})
    return str(run_id)


def debounced_due(debounce: DebounceRule, created_at: float, now: float) -> float:
    """A later start pushes the window to ``period`` from now, never past ``max_wait``
    after the first start."""
    due = now + debounce.period
    if debounce.max_wait is not None:
        due = min(due, created_at + debounce.max_wait)
    return max(due, now)


# -- the claim's gate -------------------------------------------------------------------


@dataclass
class Gate:
    """What one claim of one gated workflow lets through (see the module)."""

    workflow: str
    rules: FlowRules
    now: float
    keys: dict[str, dict[str, str]]
    """Each candidate's keys, by rule."""
    executing: Counter[tuple[str, str]]
    """Executing runs per (rule, key), counting those let through here."""
    tats: dict[str, float]
    """The rate's TAT per key, as read, then as moved here."""
    truncated: bool
    """The claim read as many due runs as it may: there may be more behind them."""
    moved: set[str] = field(default_factory=set)
    pushed: dict[str, float] = field(default_factory=dict)
    """Runs the rate holds back, and when each may start."""
    blocked: bool = False
    """Some due run waits for a concurrency key."""
    started: list[str] = field(default_factory=list)
    _queued: Counter[str] = field(default_factory=Counter)

    def admit(self, run_id: str, status: str) -> bool:
        """Whether the run may be leased now; counts it if so."""
        if status == "running":
            return True  # an expired lease taken over: the count stays as it was
        keys = self.keys.get(run_id, {})
        # A run created before a limit existed has no key for it: that limit passes it.
        held = [(lim, (lim.id, keys[lim.id])) for lim in self.rules.limits if lim.id in keys]
        if any(self.executing[slot] >= lim.limit for lim, slot in held):
            self.blocked = True
            return False
        rate = self.rules.rate
        value = keys.get(rate_id(self.workflow)) if rate is not None else None
        if rate is not None and value is not None:
            tat = max(self.tats.get(value, self.now), self.now)
            allowed_at = tat - rate.tolerance
            if allowed_at > self.now + 1e-9:
                # Its turn: after those this claim already put in line for the key.
                self.pushed[run_id] = allowed_at + self._queued[value] * rate.interval
                self._queued[value] += 1
                return False
            self.tats[value] = tat + rate.interval
            self.moved.add(value)
        for _, slot in held:
            self.executing[slot] += 1
        if self.rules.rate is not None or self.rules.debounce is not None:
            self.started.append(run_id)
        return True

    async def settle(self, tx: Tx, leased: set[str]) -> None:
        """Write what the claim decided: the moved TATs, the pushed runs' due times, and
        the rate and debounce keys of the runs that started (those leased)."""
        limit_id = rate_id(self.workflow)
        for value in sorted(self.moved):
            await tx.run("set_rate_bucket", {"limit_id": limit_id, "value": value,
                                             "tat": self.tats[value]})  # fmt: skip
        for run_id, due_at in self.pushed.items():
            await tx.run("push_run", {"id": run_id, "due_at": due_at})
        started = [run_id for run_id in self.started if run_id in leased]
        if started:
            await tx.run("delete_started_keys", {"ids": tx.array(started)})


async def open_gate(
    tx: Tx, workflow: str, rules: FlowRules, due: Sequence[Row], scanned: int
) -> Gate:
    """The gate of a claim of ``workflow`` (its lock held) over its due runs ``due``,
    as ``due_gated_runs`` reads them: each with its keys, and how many executing runs
    hold each."""
    keys: dict[str, dict[str, str]] = {}
    executing: Counter[tuple[str, str]] = Counter()
    for row in due:
        if len(row) > 6:
            run_keys = keys[str(row[0])] = {}
            for limit_id, value, count in _keys(row[6]):
                run_keys[limit_id] = value
                executing[limit_id, value] = count
    tats: dict[str, float] = {}
    if rules.rate is not None:
        values = sorted({k[rate_id(workflow)] for k in keys.values() if rate_id(workflow) in k})
        if values:
            params = {"limit_id": rate_id(workflow), "values": tx.array(values)}
            tats = {row[0]: float(row[1]) for row in await tx.all("rate_buckets", params)}
    return Gate(workflow, rules, tx.now, keys, executing, tats, truncated=len(due) >= scanned)


def _keys(found: Any) -> list[tuple[str, str, int]]:
    """A due run's keys with their executing runs, as each dialect hands them:
    PostgreSQL an array of ``limit_id<US>value<US>count``, SQLite JSON triples."""
    if isinstance(found, str | bytes):
        return [(str(i), str(v), int(n)) for i, v, n in orjson.loads(found)]
    out = []
    for item in found or ():
        # From the right: a value is JSON (no raw US in it), a count digits.
        head, n = item.rsplit("\x1f", 1)
        limit_id, value = head.rsplit("\x1f", 1)
        out.append((limit_id, value, int(n)))
    return out


# -- why a queued run waits ------------------------------------------------------------

AHEAD_COUNTED = 1000
"""Due runs of a higher priority counted for a queued run, at most (a read for people)."""


async def queue_states(tx: Tx, run_ids: Sequence[str]) -> dict[str, QueueRow]:
    """What holds each of these queued runs back: its priority, its keys with how
    busy each concurrency key is, and the due runs of a higher priority ahead of it."""
    if not run_ids:
        return {}
    runs = await tx.all("queued_priorities", {"ids": tx.array(run_ids)})
    keys: dict[str, dict[str, str]] = {}
    for run_id, limit_id, value in await tx.all("keys_of_runs", {"ids": tx.array(run_ids)}):
        keys.setdefault(run_id, {})[limit_id] = value
    rules: dict[str, FlowRules | None] = {}
    busy: dict[tuple[str, str, str], int] = {}
    ahead: dict[int, int] = {}
    states: dict[str, QueueRow] = {}
    for run_id, workflow, priority, due_at in runs:
        if workflow not in rules:
            found = await tx.one("workflow_cancel_on", {"id": workflow})
            stored = None if found is None or found[1] is None else bytes(found[1])
            rules[workflow] = None if stored is None else FlowRules.from_json(stored)
        holds = []
        for limit_id, value in sorted(keys.get(run_id, {}).items()):
            holds.append(await _hold(tx, workflow, rules[workflow], limit_id, value, busy))
        if due_at is not None and due_at <= tx.now and priority not in ahead:
            row = await tx.one(
                "runs_ahead", {"now": tx.now, "priority": priority, "most": AHEAD_COUNTED}
            )
            ahead[priority] = 0 if row is None else int(row[0])
        states[run_id] = QueueRow(int(priority), tuple(holds), ahead.get(priority, 0))
    return states


async def _hold(
    tx: Tx,
    workflow: str,
    rules: FlowRules | None,
    limit_id: str,
    value: str,
    busy: dict[tuple[str, str, str], int],
) -> KeyHold:
    if limit_id.startswith("r:"):
        return KeyHold("rate", rules.rate.key if rules and rules.rate else None, value)
    if limit_id.startswith("d:"):
        debounce = rules.debounce if rules else None
        return KeyHold("debounce", debounce.key if debounce else None, value)
    limit = next((lim for lim in (rules.limits if rules else ()) if lim.id == limit_id), None)
    slot = (workflow, limit_id, value)
    if slot not in busy:
        params = {"workflow": workflow, "limit_id": limit_id, "value": value}
        row = await tx.one("executing_of_key", params)
        busy[slot] = 0 if row is None else int(row[0])
    return KeyHold(
        "concurrency", limit_id[2:], value, busy[slot], None if limit is None else limit.limit
    )
