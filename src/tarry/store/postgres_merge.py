"""Set-based forms of the group-committed writes.

A batch of hot writes (``postgres_batch``) is one transaction, but each of its
statements is still a statement: parameters dumped, a message sent, a plan run,
a result parsed, on the worker's own CPU, which parking many runs at once is bound
by. Where a batch holds several statements of a kind that has a set-based form,
they go as one statement over the set's rows (a row per run back, matched by id),
after one statement taking their locks in sorted order (``PRELUDES``: each
statement's lock is taken before its snapshot).

The rows go as one JSON text, read by ``json_to_recordset``, rather than as an
array per column: psycopg dumps an array element by element in Python, about 35 us
a row of twelve columns, where orjson writes the whole set in under one (bytes as
hex, which the statement decodes).

Only the first statement of each run and each lock key joins the set: a second
park on one signal key in the same statement would not see the first one's
waiter (one snapshot), so it runs after the set, alone, as it would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .postgres_tx import TextArray

Params = dict[str, Any]


@dataclass(frozen=True)
class Merge:
    query: str
    """The set-based statement: its rows as the JSON array of objects ``:rows``."""
    rows: tuple[str, ...]
    """The per-row parameters: the columns the set statement reads from ``:rows``."""
    shared: tuple[str, ...]
    """Parameters the same for every statement of the batch's store (the channel)."""
    unique: tuple[str, ...]
    """Parameters no two rows of the set may share (the run, the lock key)."""
    by: str = "run_id"
    """The per-row parameter the set statement's rows begin with, naming their run."""
    lock: str | None = None
    """The parameter naming each row's lock, taken for all rows first, sorted."""


MERGES = {
    "park_signal": Merge(
        query="park_signals",
        rows=("run_id", "token", "key", "step_key", "kind", "deadline", "waiting_for",
              "started_at", "pos", "spec", "due", "now"),
        shared=("channel",),
        unique=("run_id", "lock"),
        lock="lock",
    ),
    "insert_plain_run": Merge(
        query="insert_plain_runs",
        rows=("id", "workflow", "payload", "trigger", "parent", "version", "now", "trace"),
        shared=("channel",),
        unique=("id",),
        by="id",
    ),
    "save_step": Merge(
        query="save_steps",
        rows=("run_id", "token", "key", "kind", "status", "output", "error", "attempts",
              "started_at", "ended_at", "pos", "spec", "due_at", "need"),
        shared=(),
        unique=("run_id",),
    ),
    "finish_orphan": Merge(
        query="finish_orphans",
        rows=("run_id", "token", "status", "output", "error", "now"),
        shared=(),
        unique=("run_id",),
    ),
}  # fmt: skip
MIN_SET = 2
"""A lone statement of a kind goes as itself: the set-based form pays off from two."""


def plan(queries: list[str], params: list[Params]) -> tuple[dict[str, list[int]], list[int]]:
    """The batch's statements by index: those that go as a set, per kind, and the rest
    (in their order)."""
    sets: dict[str, list[int]] = {}
    seen: dict[str, set[tuple[str, Any]]] = {}
    alone: list[int] = []
    for i, (query, p) in enumerate(zip(queries, params, strict=True)):
        merge = MERGES.get(query)
        if merge is None:
            alone.append(i)
            continue
        taken = seen.setdefault(query, set())
        marks = {(name, p[name]) for name in merge.unique}
        if marks & taken:
            alone.append(i)
            continue
        taken |= marks
        sets.setdefault(query, []).append(i)
    for query, members in list(sets.items()):
        if len(members) < MIN_SET:
            alone.extend(members)
            del sets[query]
    alone.sort()
    return sets, alone


def set_params(merge: Merge, members: list[Params]) -> Params:
    """The set statement's parameters: ``rows``, each member's parameters as a JSON
    object (the statement reads the columns it names and passes the rest by), and
    the shared ones."""
    out: Params = {"rows": orjson.dumps(members, default=_hex).decode()}
    for name in merge.shared:
        out[name] = members[0][name]
    return out


def _hex(value: object) -> str:
    """What JSON cannot hold: bytes (a payload, an output) as hex, for ``decode``."""
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"a set statement's parameter cannot be {type(value).__name__}")


def locks(merge: Merge, members: list[Params]) -> TextArray:
    """The members' lock keys, sorted, bound as the store binds every array of strings."""
    assert merge.lock is not None
    return TextArray(sorted(p[merge.lock] for p in members))
