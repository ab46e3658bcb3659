"""Group commit for PostgreSQL step results.

Steps finish in many runs at once. Their fenced writes (``save_step``: the lease
check and the upsert in one statement) queue here, on the store's I/O loop, and
go out together: one transaction, the statements pipelined, one commit. A lone
write goes out as its own single statement. While a batch is in flight the next
one gathers, so the batch grows with the load and a lone write is never held
back waiting for company.

A lost lease does not spoil the batch: that statement simply returns no row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .sql import load_queries

if TYPE_CHECKING:
    from .postgres_io import Tx

Q = load_queries("postgres")

Row = tuple[Any, ...] | None
Transact = Callable[[Callable[["Tx"], Awaitable[list[Row]]], bool], Awaitable[list[Row]]]


class StepBatcher:
    """Batches on ``loop``; ``transact(body, single)`` runs one batch's transaction."""

    def __init__(self, loop: asyncio.AbstractEventLoop, transact: Transact) -> None:
        self.loop = loop
        self.transact = transact
        self._pending: list[tuple[dict[str, Any], asyncio.Future[Row]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def submit(self, params: dict[str, Any]) -> Row:
        """From any loop: the ``save_step`` row for ``params`` (None: lease lost)."""
        if asyncio.get_running_loop() is self.loop:
            return await self._enqueue(params)
        handed = asyncio.run_coroutine_threadsafe(self._enqueue(params), self.loop)
        return await asyncio.wrap_future(handed)

    async def _enqueue(self, params: dict[str, Any]) -> Row:
        future: asyncio.Future[Row] = self.loop.create_future()
        self._pending.append((params, future))
        if self._draining is None:
            self._draining = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    rows = await self.transact(
                        _body([params for params, _ in batch]), len(batch) == 1
                    )
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), row in zip(batch, rows, strict=True):
                    if not future.done():
                        future.set_result(row)
        finally:
            self._draining = None


def _body(batch: list[dict[str, Any]]) -> Callable[[Tx], Awaitable[list[Row]]]:
    async def body(tx: Tx) -> list[Row]:
        if len(batch) == 1:
            return [await tx.one("save_step", batch[0])]
        async with tx.conn.pipeline():
            cursors = [await tx.conn.execute(Q["save_step"], params) for params in batch]
            return [await cursor.fetchone() for cursor in cursors]

    return body
