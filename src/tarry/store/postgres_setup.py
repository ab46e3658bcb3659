"""Connecting to PostgreSQL: the session's options, the migrations, the offset to the
server's clock, and which errors are outages worth retrying."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ..clock import Clock, SystemClock
from ..errors import ConfigError, SchemaTooNew
from .postgres_url import masked
from .sql import load_migrations, load_queries

Q = load_queries("postgres")
MIGRATIONS = load_migrations("postgres")
SCHEMA_VERSION = MIGRATIONS[-1][0]

CONNECT_TIMEOUT = 5
_CLOCK_READINGS = 3
_TRUSTED_ROUND_TRIP = 0.5
IDLE_IN_TX_MS = 10_000
"""tarry's transactions never wait on anything but the database, so a session idle
inside one belongs to a process that stopped; a user's ``options`` may set another
value (it comes later, so it wins)."""


def connection_options(conninfo: str, schema: str) -> dict[str, Any]:
    """What every connection of the store is opened with."""
    given = conninfo_to_dict(conninfo)
    options = " ".join(
        filter(
            None,
            [
                # A session paused inside a transaction (a stopped or swapped-out
                # process) must not hold its locks for long: the server ends it, and
                # the transaction is retried elsewhere.
                f"-c idle_in_transaction_session_timeout={IDLE_IN_TX_MS}",
                # The store's statements each touch a few rows through an index, but
                # with no statistics yet (or stale ones) on a large table the planner
                # may cost them high enough to compile them: 50-80 ms of JIT for a
                # lookup that takes under 1 ms. The url's own options come after.
                "-c jit=off",
                str(given.get("options") or ""),
                f'-c search_path="{schema}"',
            ],
        )
    )
    kwargs: dict[str, Any] = {"autocommit": True, "options": options}
    if "connect_timeout" not in given:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT
    if "application_name" not in given:
        kwargs["application_name"] = f"tarry/{schema}"[:63]
    return kwargs


async def follow_server_clock(clock: Clock, conn: psycopg.AsyncConnection[Any]) -> None:
    """Leases and due times are compared across machines: read them all off the
    server's clock, as this machine's plus the offset measured here.

    Of a few readings the one with the shortest round trip is kept, and its offset
    is applied only if it exceeds that round trip: a smaller one cannot be told from
    no offset at all (two processes on one machine must read the same time)."""
    if not isinstance(clock, SystemClock):
        return  # a clock moved by hand (tests) is the one time there is
    best: tuple[float, float] | None = None
    for _ in range(_CLOCK_READINGS):
        before = time.time()
        cur = await conn.execute(Q["server_clock"])
        row = await cur.fetchone()
        after = time.time()
        assert row is not None
        reading = (after - before, float(row[0]) - (before + after) / 2)
        if best is None or reading[0] < best[0]:
            best = reading
    assert best is not None
    round_trip, offset = best
    if round_trip > _TRUSTED_ROUND_TRIP:
        return  # too slow an answer to learn anything from; keep the last offset
    clock.offset = offset if abs(offset) > round_trip else 0.0


async def migrate(conn: psycopg.AsyncConnection[Any], url: str, schema: str) -> None:
    """Apply missing migrations under a lock, so that processes starting together take
    turns; refuse a schema written by a newer tarry."""
    try:
        async with conn.transaction():
            await conn.execute(Q["migrate_lock"], {"schema": schema})
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
            await conn.execute(Q["create_meta"])
            cur = await conn.execute(Q["schema_version"])
            row = await cur.fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"the store {masked(url)!r} (schema {schema!r}) has schema "
                    f"version {current}, but this tarry knows versions up to "
                    f"{SCHEMA_VERSION}; upgrade tarry to open it"
                )
            for version, migration in MIGRATIONS:
                if version > current:
                    await conn.execute(migration.encode())
            if current < SCHEMA_VERSION:
                await conn.execute(Q["set_schema_version"], {"version": str(SCHEMA_VERSION)})
    except psycopg.Error as exc:
        raise ConfigError(f"cannot prepare schema {schema!r} in {masked(url)!r}: {exc}") from None


OUTAGE_CLASSES = ("08", "40", "53", "57", "25P03", "55P03")
"""SQLSTATE classes worth retrying: connection exceptions, rolled-back transactions
(deadlock, serialization), insufficient resources, operator intervention (a server
shutting down or restarting), and this session's own timeouts (idle in a
transaction, waiting for a lock). A program limit or a data error is not an outage:
the same statement would fail again."""


def is_outage(exc: psycopg.OperationalError) -> bool:
    state = exc.sqlstate
    return state is None or state.startswith(OUTAGE_CLASSES)
