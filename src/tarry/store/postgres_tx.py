"""One PostgreSQL transaction as the store core sees it (``core.port.Tx``)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

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
        return list(values)


@functools.lru_cache(maxsize=256)
def _statement(text: str) -> str:
    return to_dialect("postgres", text)
