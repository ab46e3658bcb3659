"""One PostgreSQL transaction as the store core sees it (``core.port.Tx``)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.adapt import Dumper

from .core.port import LockKind
from .sql import load_queries, to_dialect

Q = load_queries("postgres")

_LOCK_NAMES = {
    "signal": "signal",
    "event": "event",
    "event-value": "event-value",
    "event-id": "event-id",
    "invoke": "invoke",
    "cap": "tarry-cap",
    "purge": "purge",
    "token": "token",
    "flow": "flow",
}
_NOTIFYING = frozenset({"resolve_wait"})
"""Named queries that send the schema's NOTIFY themselves."""


class Tx:
    """One transaction on one connection: the port of ``core.port.Tx``."""

    __slots__ = ("channel", "conn", "notified", "now", "retried_unknown", "schema", "wake_pending")

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        retried_unknown: bool,
        channel: str,
        schema: str,
        now: float,
    ) -> None:
        self.conn = conn
        self.channel = channel
        self.schema = schema
        self.now = now
        self.wake_pending = False
        """Set when the transaction makes a run due: NOTIFY is sent before COMMIT."""
        self.notified = False
        """Set when a statement of the transaction sent that NOTIFY itself."""
        self.retried_unknown = retried_unknown
        """True when an earlier attempt of this operation failed while committing,
        so it may already have been applied."""

    def _params(self, query: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        if query in _NOTIFYING:
            self.notified = True
            return {**params, "channel": self.channel}
        return params

    async def one(self, query: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        cur = await self.conn.execute(Q[query], self._params(query, params))
        return await cur.fetchone()

    async def all(self, query: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        cur = await self.conn.execute(Q[query], self._params(query, params))
        return await cur.fetchall()

    async def run(self, query: str, params: Mapping[str, Any]) -> int:
        cur = await self.conn.execute(Q[query], self._params(query, params))
        return cur.rowcount

    async def select(self, text: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        cur = await self.conn.execute(_statement(text), params)
        return await cur.fetchall()

    async def lock(self, kind: LockKind, key: str, *, shared: bool = False) -> None:
        lock = f"{self.schema}:{_LOCK_NAMES[kind]}:{key}"
        await self.conn.execute(Q["shared_lock" if shared else "key_lock"], {"lock": lock})

    def wake(self) -> None:
        self.wake_pending = True

    def array(self, values: Sequence[str]) -> Any:
        return TextArray(values)


class TextArray:
    """Strings bound as one array parameter, written by ``TextArrayDumper``."""

    __slots__ = ("values",)

    def __init__(self, values: Sequence[str]) -> None:
        self.values = values


class TextArrayDumper(Dumper):
    """An array literal of strings in a few string operations over the whole array.

    psycopg dumps a list element by element in Python (a dumper looked up, a regular
    expression searched, per element: about 3 us each), which an event delivered to
    10,000 waiters paid twice over before its statement began. Here every element is
    quoted: joined on NUL (which PostgreSQL text cannot hold, so no element has one),
    backslashes and double quotes escaped, then the NULs turned into the separators."""

    oid = 0
    """Unknown, as psycopg sends a list of strings: the statement gives the type
    (``:ids::bigint[]``, ``id = ANY(:ids)``)."""

    def dump(self, obj: TextArray) -> bytes:
        values = obj.values
        if not values:
            return b"{}"
        joined = "\x00".join(values)
        if joined.count("\x00") != len(values) - 1:
            raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        escaped = joined.replace("\\", "\\\\").replace('"', '\\"')
        return ('{"' + escaped.replace("\x00", '","') + '"}').encode()


# Only this class is dumped this way, so registering it for every connection of the
# process changes nothing else.
psycopg.adapters.register_dumper(TextArray, TextArrayDumper)


@functools.lru_cache(maxsize=256)
def _statement(text: str) -> str:
    return to_dialect("postgres", text)
