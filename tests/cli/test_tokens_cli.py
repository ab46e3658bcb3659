"""``tarry tokens rotate``: the real command against a fresh SQLite file."""

from __future__ import annotations

import asyncio

import tarry

from .conftest import Tarry


def secrets(url: str) -> list[str]:
    async def read() -> list[str]:
        async with tarry.App(url) as app:
            store = await app._open()
            return [s.value for s in await store.token_secrets("offered")]

    return asyncio.run(read())


def test_rotate_keeps_the_old_secret_for_its_grace(tarry: Tarry, sqlite_url: str) -> None:
    assert tarry("init").returncode == 0
    before = secrets(sqlite_url)
    done = tarry("tokens", "rotate", "--grace", "1h")
    assert done.returncode == 0, done.stderr
    assert "new secret" in done.stdout and "1h" in done.stdout
    after = secrets(sqlite_url)
    assert len(after) == 2 and after[1] == before[0] and after[0] != before[0]
    assert tarry.json("tokens", "rotate", "--grace", "0") == {"rotated": True, "grace_seconds": 0.0}
    last = secrets(sqlite_url)  # the one rotated out with no grace is gone at once
    assert len(last) == 2 and after[0] not in last and last[1] == before[0]


def test_bad_usage_exits_2(tarry: Tarry) -> None:
    assert tarry("init").returncode == 0
    unknown = tarry("tokens", "list")
    assert unknown.returncode == 2 and "tarry tokens rotate" in unknown.stderr
    bad = tarry("tokens", "rotate", "--grace", "soon")
    assert bad.returncode == 2 and "--grace" in bad.stderr
