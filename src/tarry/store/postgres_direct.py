"""Transactions whose caller may stop waiting: tickets for the store's loop, and the
pools of loops attached to the store (a worker's), which transact right there."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from .postgres_batch import StatementBatcher

T = TypeVar("T")

DRAIN_SECONDS = 5.0
"""How long a closing pool lets the transactions it started finish."""


class Ticket:
    """Shared by a caller and its transaction: whether the caller stopped waiting,
    and the result of a transaction that ended before anyone heard of it."""

    __slots__ = ("finished", "given_up", "result")

    def __init__(self) -> None:
        self.given_up = False
        self.finished = False
        """Set on the store's loop when the result went back with nobody seen to
        have given up; the caller may still give up before it arrives."""
        self.result: Any = None


class Direct:
    """An attached loop's own pool, step batcher and transactions in flight."""

    def __init__(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]]) -> None:
        self.pool = pool
        self.users = 1
        self.steps: StatementBatcher
        self.inflight: set[asyncio.Task[Any]] = set()

    async def call(
        self, transaction: Coroutine[Any, Any, T], abandoned: Callable[[T], Awaitable[None]] | None
    ) -> T:
        """Run the transaction as a task of its own: a caller that gives up does not
        tear it, and ``abandoned`` gets the result nobody waits for any more."""
        task = asyncio.ensure_future(transaction)
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if abandoned is not None:
                task.add_done_callback(lambda done: self._hand_back(done, abandoned))
            raise

    def _hand_back(self, done: asyncio.Task[T], abandoned: Callable[[T], Awaitable[None]]) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        task = asyncio.ensure_future(abandoned(done.result()))
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    async def close(self) -> None:
        if self.inflight:
            await asyncio.wait(set(self.inflight), timeout=DRAIN_SECONDS)
        await self.pool.close()
