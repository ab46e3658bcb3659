"""The embedded store: the store core on one sqlite3 connection.

Operations run on the one connection of ``GroupCommitWriter`` (WAL mode, group
commit, a poller for other processes' commits): brief writes on the caller's
event loop (``sqlite_inline``), the rest on its writer thread. Writers are
serialised by ``BEGIN IMMEDIATE`` in every process, so this adapter takes no
locks, and its transaction never waits on anything but SQLite: each core
operation is driven to its end right where it runs.

Times are the App's clock, read by whichever process writes. Processes that
share one database file share one machine, so they share its clock; a
``ManualClock`` is for a single process (tests).
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from operator import itemgetter
from typing import Any, cast

import orjson

from ..clock import Clock
from ..errors import ConfigError, SchemaTooNew
from .base import WakeListener
from .core import Body, CoreStore, T, metrics_reads
from .core.port import LockKind, Row, drive
from .matching import index_value
from .metrics_records import RunCounts
from .sql import load_migrations, load_queries, positional
from .sqlite_writer import GroupCommitWriter

Q = load_queries("sqlite")


def _statements(sql: str) -> list[str]:
    """The statements of a named query: comment-only pieces are not statements."""
    return [
        part
        for part in sql.split(";\n")
        if any(line.strip() and not line.strip().startswith("--") for line in part.splitlines())
    ]


Bound = tuple[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]]
"""A statement with positional parameters, and what takes its values from a mapping."""


def _bound(sql: str) -> Bound:
    numbered, names = positional(sql)
    if not names:
        return numbered, lambda params: ()
    if len(names) == 1:
        name = names[0]
        return numbered, lambda params: (params[name],)
    return numbered, cast(Callable[[Mapping[str, Any]], tuple[Any, ...]], itemgetter(*names))


STATEMENTS: dict[str, list[Bound]] = {
    name: [_bound(part) for part in _statements(sql)] or [_bound(sql)] for name, sql in Q.items()
}
"""Each named query's statements (most have one), run in order with the same
parameters, bound by position (``positional``)."""
MIGRATIONS = load_migrations("sqlite")
SCHEMA_VERSION = MIGRATIONS[-1][0]
MEMORY = ":memory:"
_memory_ids = itertools.count(1)


def sqlite_path(url: str) -> str:
    """``sqlite:///relative/path``, ``sqlite:////absolute/path`` (SQLAlchemy's form),
    or ``sqlite:///:memory:``."""
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"not a SQLite URL: {url!r}; expected sqlite:///path/to/file.db")
    path = url[len("sqlite:///") :]
    if not path:
        raise ConfigError(
            f"SQLite URL {url!r} names no file; use e.g. sqlite:///./.tarry/tarry.db, "
            "or sqlite:///:memory: for a database that lives as long as the App"
        )
    return path


class SQLiteTx:
    """One transaction on the writer's connection (the port of ``core.port.Tx``)."""

    __slots__ = ("conn", "now", "writer")

    retried_unknown = False  # a SQLite commit either happened or raised

    def __init__(self, conn: sqlite3.Connection, writer: GroupCommitWriter, now: float) -> None:
        self.conn = conn
        self.writer = writer
        self.now = now

    async def one(self, query: str, params: Mapping[str, Any]) -> Row | None:
        sql, values = STATEMENTS[query][0]
        row: Row | None = self.conn.execute(sql, values(params)).fetchone()
        return row

    async def all(self, query: str, params: Mapping[str, Any]) -> list[Row]:
        sql, values = STATEMENTS[query][0]
        return self.conn.execute(sql, values(params)).fetchall()

    async def run(self, query: str, params: Mapping[str, Any]) -> int:
        count = 0
        for sql, values in STATEMENTS[query]:
            count = self.conn.execute(sql, values(params)).rowcount
        return count

    async def select(self, sql: str, params: Mapping[str, Any]) -> list[Row]:
        return self.conn.execute(sql, params).fetchall()

    async def lock(self, kind: LockKind, key: str, *, shared: bool = False) -> None:
        """Nothing to take: the transaction already excludes every other writer."""

    def wake(self) -> None:
        self.writer.wake_pending = True

    def array(self, values: Sequence[str]) -> Any:
        return orjson.dumps(list(values)).decode()


def _run_on(
    body: Body[T], writer: GroupCommitWriter, now: Callable[[], float], conn: sqlite3.Connection
) -> T:
    """A core operation as one of the writer's operations, on its connection."""
    return drive(body(SQLiteTx(conn, writer, now())))


class SQLiteStore(CoreStore):
    starts_leased = True

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        synchronous: str = "FULL",
        poll_interval: float = 0.05,
        batch_limit: int = 1024,
    ) -> None:
        super().__init__(clock)
        self.url = url
        path = sqlite_path(url)
        if path == MEMORY:
            # One in-memory database per store, shared by its connections: it lives
            # while the writer's connection is open.
            path = f"file:tarry-memory-{next(_memory_ids)}?mode=memory&cache=shared"
        self.path = path
        self._io = GroupCommitWriter(
            url,
            path,
            prepare=self._migrate,
            synchronous=synchronous,
            poll_interval=poll_interval,
            batch_limit=batch_limit,
        )

    async def open(self) -> None:
        await self._io.open()

    async def close(self) -> None:
        await self._io.close()

    async def bind_loop(self) -> None:
        """Nothing to do: results already reach each caller's loop in one hand-off."""

    async def unbind_loop(self) -> None:
        """Nothing to undo."""

    def add_wake_listener(self, listener: WakeListener) -> None:
        self._io.add_wake_listener(listener)

    def remove_wake_listener(self, listener: WakeListener) -> None:
        self._io.remove_wake_listener(listener)

    async def wake_others(self) -> None:
        """Nothing: other processes notice every commit to the file."""

    # Plain functions handing back the writer's awaitable: on the hottest path of the
    # embedded store, a coroutine per layer is measurable.

    def _transact(self, body: Body[T], *, idempotent: bool = True) -> Awaitable[T]:
        return self._io.call(self._op(body), reads=False)

    def _read(self, body: Body[T]) -> Awaitable[T]:
        return self._io.call(self._op(body), reads=True)

    def _brief(self, body: Body[T], *, idempotent: bool = True) -> Awaitable[T]:
        return self._io.call(self._op(body), brief=True)

    def _op(self, body: Body[T]) -> Callable[[sqlite3.Connection], T]:
        return partial(_run_on, body, self._io, self.clock.now)

    async def run_counts(self) -> RunCounts:
        """Read on a connection of its own, in a thread of its own: a scrape reads every
        parked run, and on the writer's connection it would hold every write back
        meanwhile, where WAL lets a reader go on beside the writer. (An in-memory
        database has one connection's worth of locks: it reads as before.)"""
        if self._io.in_memory:
            return await super().run_counts()
        return await asyncio.to_thread(self._read_aside, metrics_reads.run_counts)

    def _read_aside(self, body: Body[T]) -> T:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        except sqlite3.Error as exc:
            raise self._io.failure(exc) from None
        try:
            conn.execute("BEGIN")  # deferred: one snapshot, no write lock
            try:
                return _run_on(body, self._io, self.clock.now, conn)
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise self._io.failure(exc) from None
        finally:
            conn.close()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the schema up to date; a database already current is only read, so a
        read-only file still opens for reading."""
        try:
            current = self._schema_version(conn)
            if current == SCHEMA_VERSION:
                return
            conn.create_function("tarry_index_value", 1, index_value, deterministic=True)
            conn.execute("BEGIN IMMEDIATE")
            try:
                current = self._schema_version(conn)  # another process may have migrated
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS tarry_meta "
                    "(key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                )
                for version, sql in MIGRATIONS:
                    if version > current:
                        for statement in sql.split(";"):
                            if statement.strip():
                                conn.execute(statement)
                conn.execute(
                    "INSERT INTO tarry_meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(max(current, SCHEMA_VERSION)),),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise ConfigError(
                f"cannot prepare the SQLite database {self.url!r} for tarry: {exc}"
            ) from None

    def _schema_version(self, conn: sqlite3.Connection) -> int:
        """The stored schema version (0: a new database); refuses a newer one, and a
        database that holds other tables but no tarry schema."""
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if "tarry_meta" not in tables:
            foreign = sorted(t for t in tables if not t.startswith("sqlite_"))
            if foreign:
                raise ConfigError(
                    f"the SQLite database {self.url!r} is not a tarry store: it holds "
                    f"other tables ({', '.join(foreign[:5])}) and no tarry schema; "
                    "give tarry a file of its own"
                )
            return 0
        row = conn.execute("SELECT value FROM tarry_meta WHERE key = 'schema_version'").fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the store {self.url!r} has schema version {current}, but this tarry "
                f"knows versions up to {SCHEMA_VERSION}; upgrade tarry to open it"
            )
        return current
