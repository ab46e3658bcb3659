"""The PostgreSQL store's plumbing: its own I/O loop, transactions with retry, and
the LISTEN connection that turns other processes' commits into wake-ups.

Store methods are awaited from many event loops (each worker's, the App's portal
loop), but a psycopg async connection belongs to the loop that made it. So the
store runs one loop in a daemon thread, owns the pool and the LISTEN connection
there, and every method hands its transaction to that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolClosed

from ..clock import Clock
from ..errors import ConfigError, StoreError, StoreUnavailable
from .base import WakeListener
from .postgres_batch import StatementBatcher
from .postgres_direct import DRAIN_SECONDS, Direct, Ticket
from .postgres_setup import connection_options, follow_server_clock, is_outage, migrate
from .postgres_tx import Tx
from .postgres_url import masked
from .sql import load_queries

T = TypeVar("T")
Q = load_queries("postgres")

log = logging.getLogger("tarry")

_HEALTH_CHECK_EVERY = 15.0


Body = Callable[[Tx], Awaitable[T]]


class IOLoop:
    """The store's event loop thread, its pool and its LISTEN connection."""

    def __init__(
        self,
        url: str,
        conninfo: str,
        schema: str,
        listeners: list[WakeListener],
        *,
        pool_size: int,
        retry_seconds: float,
        clock: Clock,
    ) -> None:
        self.url = url
        self.clock = clock
        """Every transaction reads its ``now`` here. A system clock follows the
        server's: its offset is measured on connecting and at each health check."""
        self.conninfo = conninfo
        self.schema = schema
        self.channel = f"tarry_{schema}"[:63]
        self.listeners = listeners
        self.pool_size = pool_size
        self.retry_seconds = retry_seconds
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="tarry-postgres", daemon=True)
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._wake_scheduled = False
        self._closing = False
        self._checking = False
        self._inflight: set[asyncio.Task[Any]] = set()
        self.steps = StatementBatcher(self.loop, self._batch_on_store_loop)
        self._direct: dict[asyncio.AbstractEventLoop, Direct] = {}
        """Loops that transact on a pool of their own (a worker's), without the hops
        to and from this thread: see ``attach``."""
        self._kwargs = connection_options(conninfo, schema)

    # -- running code on the loop --------------------------------------------------------

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    def halt(self) -> None:
        """Stop the loop; its thread closes it and ends."""
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def call(
        self,
        body: Body[T],
        *,
        idempotent: bool,
        abandoned: Callable[[T], Awaitable[None]] | None = None,
        single: bool = False,
    ) -> T:
        """Run ``body`` as one transaction on the store's loop, from the caller's loop
        (or on the caller's loop itself, when it is attached).

        A caller that gives up (is cancelled) before the transaction starts stops
        it from starting; once started, it runs to its end so its outcome is never
        torn, and ``abandoned`` gets the result nobody is waiting for any more."""
        direct = self._direct.get(asyncio.get_running_loop())
        if direct is not None:
            return await direct.call(
                self._transact(direct.pool, body, idempotent=idempotent, single=single),
                abandoned,
            )
        ticket = Ticket()
        future = asyncio.run_coroutine_threadsafe(
            self.transact(
                body, idempotent=idempotent, ticket=ticket, abandoned=abandoned, single=single
            ),
            self.loop,
        )
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            ticket.given_up = True
            if abandoned is not None:
                # The transaction may have ended just before: its result was on its
                # way and is lost with this cancellation. Decided on the store's
                # loop, where ``transact`` decides too, so it is handled once.
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    self.loop.call_soon_threadsafe(self._abandon_late, ticket, abandoned)
            raise

    def _abandon_late(self, ticket: Ticket, abandoned: Callable[[Any], Awaitable[None]]) -> None:
        if not ticket.finished:
            return  # not ended yet (``transact`` will see ``given_up``) or never started
        ticket.finished = False
        result, ticket.result = ticket.result, None

        async def hand_back() -> None:
            with contextlib.suppress(Exception):
                await abandoned(result)

        task = self.loop.create_task(hand_back())
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def batcher(self) -> StatementBatcher:
        """The hot-write batcher for the calling loop."""
        direct = self._direct.get(asyncio.get_running_loop())
        return self.steps if direct is None else direct.steps

    async def _batch_on_store_loop(self, body: Body[list[Any]], single: bool) -> list[Any]:
        return await self.transact(body, idempotent=True, single=single)

    async def attach(self) -> None:
        """Give the calling loop a pool of its own, so that its transactions run right
        there (a worker's claims and step writes) instead of hopping to this thread
        and back, and waiting for the GIL on each side. ``detach`` on the same loop."""
        loop = asyncio.get_running_loop()
        direct = self._direct.get(loop)
        if direct is not None:
            direct.users += 1
            return
        try:
            pool = await self._open_pool("worker")
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {masked(self.url)!r}: {exc}"
            ) from exc
        if loop in self._direct:  # attached meanwhile by another task of this loop
            await pool.close()
            self._direct[loop].users += 1
            return
        direct = Direct(pool)

        async def batch(body: Body[list[Any]], single: bool) -> list[Any]:
            return await self._transact(pool, body, idempotent=True, single=single)

        direct.steps = StatementBatcher(loop, batch)
        self._direct[loop] = direct

    async def detach(self) -> None:
        """Undo one ``attach`` of the calling loop; the last one closes its pool once
        the transactions it started have ended."""
        loop = asyncio.get_running_loop()
        direct = self._direct.get(loop)
        if direct is None:
            return
        direct.users -= 1
        if direct.users > 0:
            return
        del self._direct[loop]
        await direct.close()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, migrate, open the pool and start listening (on the store's loop)."""
        conn = await self._connect_for_open()
        try:
            await self._migrate(conn)
            await self._follow_server_clock(conn)
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException:
            await conn.close()
            raise
        try:
            pool = await self._open_pool("store")
        except psycopg.Error as exc:
            await conn.close()
            raise ConfigError(
                f"cannot connect to PostgreSQL at {masked(self.url)!r}: {exc}"
            ) from None
        self.pool = pool
        self._listen_task = asyncio.create_task(self._listen(conn), name="tarry-listen")

    async def _open_pool(self, role: str) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        """A pool on the calling loop, open with one connection, or psycopg.Error."""
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            self.conninfo,
            kwargs=self._kwargs,
            min_size=1,
            max_size=self.pool_size,
            open=False,
            timeout=5.0,
            name=f"tarry-{self.schema}-{role}",
        )
        try:
            await pool.open(wait=True, timeout=10.0)
        except BaseException:
            with contextlib.suppress(Exception):
                await pool.close()
            raise
        return pool

    async def stop(self) -> None:
        """Refuse new transactions, let those in flight finish (for a while), close."""
        self._closing = True
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listen_task
        if self._inflight:
            _, stuck = await asyncio.wait(set(self._inflight), timeout=DRAIN_SECONDS)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        if self.pool is not None:
            await self.pool.close()

    async def _follow_server_clock(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await follow_server_clock(self.clock, conn)

    async def _connect(self, **extra: Any) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self.conninfo, **self._kwargs, **extra)

    async def _connect_for_open(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await self._connect()
        except psycopg.Error as exc:
            raise ConfigError(
                f"cannot connect to PostgreSQL at {masked(self.url)!r}: {exc}"
            ) from None

    async def _migrate(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await migrate(conn, self.url, self.schema)

    # -- transactions --------------------------------------------------------------------

    async def transact(
        self,
        body: Body[T],
        *,
        idempotent: bool,
        ticket: Ticket | None = None,
        abandoned: Callable[[T], Awaitable[None]] | None = None,
        single: bool = False,
    ) -> T:
        """Run ``body`` in one transaction, retrying on connection errors.

        With ``single`` the body is one statement, its own transaction (no BEGIN and
        COMMIT round trips); its outcome is unknown if the connection fails during it.

        A failure before COMMIT was sent rolled the transaction back, so any
        operation may run again. A failure during COMMIT leaves the outcome
        unknown: operations that are safe to repeat (``idempotent``) run again
        and see ``Tx.retried_unknown``; the others raise ``StoreError``. Once an
        attempt has failed, each connection is tried before use, so that a pool
        of connections the server dropped while idle costs no backoff per dead one."""
        pool = self.pool
        if pool is None or self._closing:
            raise StoreError(f"the store {masked(self.url)!r} is closed")
        if ticket is not None and ticket.given_up:
            raise asyncio.CancelledError  # its caller left before it began
        task = asyncio.current_task()
        assert task is not None
        owned = task not in self._inflight  # ``abandoned`` may transact in the same task
        self._inflight.add(task)
        try:
            result = await self._transact(pool, body, idempotent=idempotent, single=single)
            if ticket is not None and abandoned is not None:
                if ticket.given_up:
                    with contextlib.suppress(Exception):
                        await abandoned(result)
                else:
                    ticket.finished, ticket.result = True, result
            return result
        finally:
            if owned:
                self._inflight.discard(task)

    async def _transact(
        self,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]],
        body: Body[T],
        *,
        idempotent: bool,
        single: bool = False,
    ) -> T:
        give_up = time.monotonic() + self.retry_seconds
        delay = 0.02
        retried_unknown = False
        failed = False
        stale_in_a_row = 0
        while True:
            committing = checking = False
            try:
                async with pool.connection() as conn:
                    if failed:
                        # After a failure, the pool's idle connections may be dead too
                        # (the server restarted, or ended our sessions): try this one
                        # before using it, and pass over a dead one without waiting.
                        checking = True
                        await AsyncConnectionPool.check_connection(conn)
                        checking = False
                    tx = Tx(conn, retried_unknown, self.channel, self.schema, self.clock.now())
                    if single:
                        committing = True
                        result = await body(tx)
                    else:
                        async with conn.transaction():
                            result = await body(tx)
                            if tx.wake_pending and not tx.notified:
                                await conn.execute(Q["notify"], {"channel": self.channel})
                            committing = True
            except PoolClosed:
                raise StoreError(f"the store {masked(self.url)!r} is closed") from None
            except psycopg.OperationalError as exc:
                if self._closing:
                    raise StoreError(f"the store {masked(self.url)!r} is closed") from None
                if not is_outage(exc):
                    raise StoreError(
                        f"PostgreSQL refused the operation on {masked(self.url)!r}: {exc}"
                    ) from exc
                failed = True
                if checking and stale_in_a_row <= self.pool_size and time.monotonic() < give_up:
                    stale_in_a_row += 1  # a dead idle connection, now discarded
                    continue
                stale_in_a_row = 0
                if committing and not idempotent:
                    raise StoreUnavailable(
                        f"the connection to {masked(self.url)!r} failed while committing, so "
                        f"whether the operation took effect is unknown: {exc}"
                    ) from exc
                retried_unknown |= committing
                if time.monotonic() + delay > give_up:
                    raise StoreUnavailable(
                        f"PostgreSQL at {masked(self.url)!r} stayed unavailable for "
                        f"{self.retry_seconds:g}s: {exc}"
                    ) from exc
                if not isinstance(exc, psycopg.errors.TransactionRollback):
                    self._check_pool(pool)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            except psycopg.Error as exc:
                raise StoreError(
                    f"PostgreSQL transaction on {masked(self.url)!r} failed: {exc}"
                ) from exc
            if tx.wake_pending:
                self.schedule_wake()
            return result

    def _check_pool(self, pool: AsyncConnectionPool[Any]) -> None:
        """After a connection error, drop the pool's other dead connections in the
        background instead of failing on each of them in turn."""
        if self._checking:
            return
        self._checking = True

        async def check() -> None:
            try:
                await pool.check()
            except Exception:
                log.debug("pool check failed", exc_info=True)
            finally:
                self._checking = False

        task = asyncio.create_task(check())
        task.add_done_callback(lambda _t: None)

    # -- wake-ups ------------------------------------------------------------------------

    def schedule_wake(self) -> None:
        """Call the listeners soon, once for however many wake-ups arrive meanwhile
        (from this thread or from an attached loop's)."""
        if not self._wake_scheduled:
            self._wake_scheduled = True
            with contextlib.suppress(RuntimeError):  # the store's loop has closed
                self.loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        self._wake_scheduled = False
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:
                log.warning("a wake listener failed", exc_info=True)

    async def _listen(self, conn: psycopg.AsyncConnection[Any] | None) -> None:
        """Turn NOTIFY on the schema's channel into wake-ups; on losing the connection,
        reconnect with backoff and wake everyone once, since notifications sent
        meanwhile were lost."""
        delay = 0.05
        listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.channel))
        try:
            while True:
                try:
                    if conn is None:
                        conn = await self._connect(
                            keepalives=1,
                            keepalives_idle=10,
                            keepalives_interval=5,
                            keepalives_count=3,
                        )
                        await conn.execute(listen)
                        log.info("tarry: listening on %s again", self.channel)
                        self.schedule_wake()
                        delay = 0.05
                    async for _ in conn.notifies(timeout=_HEALTH_CHECK_EVERY):
                        self.schedule_wake()
                    await self._follow_server_clock(conn)  # a quiet spell: is it there?
                except psycopg.Error as exc:
                    log.warning("tarry: lost the LISTEN connection (%s); reconnecting", exc)
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            await conn.close()
                    conn = None
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
