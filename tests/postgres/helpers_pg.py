"""Waiting helpers for the PostgreSQL tests: counts read straight from the schema."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import psycopg

T = TypeVar("T")


def status_counts(url: str) -> dict[str, int]:
    parts = urlsplit(url)
    schema = dict(parse_qsl(parts.query))["schema"]
    base = url.split("?", 1)[0]
    with psycopg.connect(base, connect_timeout=3) as conn:
        rows = conn.execute(
            f'SELECT status, count(*) FROM "{schema}".runs GROUP BY status'
        ).fetchall()
    return {status: count for status, count in rows}


async def wait_for_counts(url: str, status: str, count: int, *, timeout: float) -> None:
    give_up = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < give_up:
        try:
            counts = await asyncio.to_thread(status_counts, url)
        except psycopg.OperationalError:
            counts = {}
        if counts.get(status, 0) >= count:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"wanted {count} runs {status} within {timeout}s; have {counts}")


async def gather_in_chunks(calls: Iterable[Awaitable[T]], size: int = 64) -> list[T]:
    results: list[T] = []
    chunk: list[Awaitable[Any]] = []
    for call in calls:
        chunk.append(call)
        if len(chunk) == size:
            results.extend(await asyncio.gather(*chunk))
            chunk = []
    results.extend(await asyncio.gather(*chunk))
    return results
