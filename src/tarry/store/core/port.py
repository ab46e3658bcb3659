"""The transaction port: all the store core needs from a database.

An adapter hands each core operation one ``Tx``: named queries to run, a way to
take a lock by kind and key (advisory locks on PostgreSQL; nothing on SQLite,
whose writers are serialised), a mark that the commit must wake the workers, the
clock's now for the whole transaction, and how the dialect passes an array.

The core is written as coroutines so that the PostgreSQL adapter can await the
network. SQLite's ``Tx`` never suspends, so its adapter drives a core operation
to its end synchronously on its writer thread (``drive``).
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeVar

T = TypeVar("T")
Row = tuple[Any, ...]

LockKind = Literal[
    "signal", "event", "event-value", "event-id", "invoke", "cap", "purge", "token", "flow"
]
"""What a lock guards: a signal key, an event name (shared by senders, alone for a
wait's lookback), one value at one path of an event name (the same, for a wait
filed under that equality), an event id (its dedupe), a child run's end, a capped
workflow's count of leased runs, the purge of ended runs (one purger at a time), a
callback token's completion (and, under the empty key, its signing secrets), a
debounce key's gathering run."""


class Tx(Protocol):
    now: float
    """The clock's time, fixed for the transaction."""

    retried_unknown: bool
    """True when an earlier attempt of this operation failed while committing, so
    it may already have been applied: a step's send looks for its stored step."""

    async def one(self, query: str, params: Mapping[str, Any]) -> Row | None:
        """The first row of the named query, or None."""

    async def all(self, query: str, params: Mapping[str, Any]) -> list[Row]:
        """Every row of the named query."""

    async def run(self, query: str, params: Mapping[str, Any]) -> int:
        """Run the named query; the number of rows it changed."""

    async def select(self, sql: str, params: Mapping[str, Any]) -> list[Row]:
        """Every row of a statement built at run time (``:name`` parameters)."""

    async def lock(self, kind: LockKind, key: str, *, shared: bool = False) -> None:
        """Hold a lock on ``key`` of ``kind`` until the transaction ends."""

    def wake(self) -> None:
        """The commit makes a run due or moves a due time earlier: wake the workers."""

    def array(self, values: Sequence[str]) -> Any:
        """``values`` as the dialect takes an array parameter."""


def drive(operation: Coroutine[Any, Any, T]) -> T:
    """Run a core operation whose ``Tx`` never suspends, to its end, right here."""
    try:
        operation.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    operation.close()
    raise RuntimeError("a store operation waited on something other than its transaction")
