"""Group commit for PostgreSQL's hot writes.

Many runs start, store step results and end at once. Those writes are single
statements that never raise for a business reason (``save_step``: the lease
check and the upsert in one statement; ``finish_orphan``; ``insert_plain_run``):
a lost lease or a case for the full path just returns no row. They queue here, on
the loop that transacts, and go out together: one transaction, the statements
pipelined, one commit; several of a kind with a set-based form (a start, a park)
go as one statement over their rows (``postgres_merge``). A lone write goes out as its
own single statement. While a batch is in flight the next one gathers, so the
batch grows with the load and a lone write is never held back waiting for company.
Should a batch fail for anything but the connection, each statement is tried
again alone, so one bad statement cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import psycopg

from . import postgres_merge as merging
from .sql import load_queries

if TYPE_CHECKING:
    from .postgres_tx import Tx

Q = load_queries("postgres")

Row = tuple[Any, ...] | None
Statement = tuple[str, dict[str, Any]]
Transact = Callable[[Callable[["Tx"], Awaitable[list[Row]]], bool], Awaitable[list[Row]]]

WAKES = {"insert_plain_run", "park_signal"}
"""Statements that make a run due (and send their own NOTIFY) when they return a
row whose second column is non-zero."""
PRELUDES = {"park_signal": "key_lock"}
"""Statements that first take a lock (with the same parameters) held to the commit:
their own snapshot must see every commit made under it, so they go in a
transaction of their own even alone."""


class StatementBatcher:
    """Batches on ``loop``; ``transact(body, single)`` runs one batch's transaction."""

    def __init__(self, loop: asyncio.AbstractEventLoop, transact: Transact) -> None:
        self.loop = loop
        self.transact = transact
        self._pending: list[tuple[Statement, asyncio.Future[Row]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def submit(self, query: str, params: dict[str, Any]) -> Row:
        """From any loop: the first row ``query`` returns for ``params``, or None."""
        if asyncio.get_running_loop() is self.loop:
            return await self._enqueue((query, params))
        handed = asyncio.run_coroutine_threadsafe(self._enqueue((query, params)), self.loop)
        return await asyncio.wrap_future(handed)

    async def _enqueue(self, statement: Statement) -> Row:
        future: asyncio.Future[Row] = self.loop.create_future()
        self._pending.append((statement, future))
        if self._draining is None:
            self._draining = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._settle(batch)
        finally:
            self._draining = None

    async def _settle(self, batch: list[tuple[Statement, asyncio.Future[Row]]]) -> None:
        try:
            single = len(batch) == 1 and batch[0][0][0] not in PRELUDES
            rows = await self.transact(_body([s for s, _ in batch]), single)
        except Exception as exc:
            if len(batch) > 1 and not isinstance(exc.__cause__, psycopg.OperationalError):
                for item in batch:  # one bad statement must not fail its neighbours
                    await self._settle([item])
                return
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            raise
        for (_, future), row in zip(batch, rows, strict=True):
            if not future.done():
                future.set_result(row)


def _body(batch: list[Statement]) -> Callable[[Tx], Awaitable[list[Row]]]:
    async def body(tx: Tx) -> list[Row]:
        if len(batch) == 1 and batch[0][0] not in PRELUDES:
            query, params = batch[0]
            rows = [await tx.one(query, params)]
        else:
            rows = await _pipelined(tx, batch)
        for (query, _), row in zip(batch, rows, strict=True):
            if query in WAKES and row is not None and row[1]:
                tx.wake_pending = tx.notified = True
        return rows

    return body


async def _pipelined(tx: Tx, batch: list[Statement]) -> list[Row]:
    """The batch's statements in one pipeline: those with a set-based form as one
    statement per kind (``postgres_merge``), the rest one by one."""
    sets, alone = merging.plan([q for q, _ in batch], [p for _, p in batch])
    rows: list[Row] = [None] * len(batch)
    async with tx.conn.pipeline():
        merged = []
        for query, members in sets.items():
            merge = merging.MERGES[query]
            given = [batch[i][1] for i in members]
            if merge.lock is not None:
                await tx.conn.execute(Q["key_locks"], {"locks": merging.locks(merge, given)})
            cursor = await tx.conn.execute(Q[merge.query], merging.set_params(merge, given))
            merged.append((members, cursor))
        cursors = []
        for i in alone:
            query, params = batch[i]
            if query in PRELUDES:
                await tx.conn.execute(Q[PRELUDES[query]], params)
            cursors.append(await tx.conn.execute(Q[query], params))
        for members, cursor in merged:
            by_id = {row[0]: row[1:] for row in await cursor.fetchall()}
            by = merging.MERGES[batch[members[0]][0]].by
            for i in members:
                rows[i] = by_id.get(batch[i][1][by])  # none back: as the statement alone
        for i, cursor in zip(alone, cursors, strict=True):
            rows[i] = await cursor.fetchone()
    return rows
