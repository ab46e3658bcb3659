"""A worker given no concurrency takes its store's default (chosen from
bench/concurrency.py: where runs/s peaked)."""

from __future__ import annotations

from pathlib import Path

import tarry
from tarry.app import DEFAULT_CONCURRENCY


def test_each_store_has_its_default() -> None:
    assert tarry.App("sqlite:///:memory:").default_concurrency == DEFAULT_CONCURRENCY["sqlite"]
    for url in ("postgresql://u@h/db", "postgres://u@h/db?schema=x"):
        assert tarry.App(url).default_concurrency == DEFAULT_CONCURRENCY["postgresql"]


async def test_a_worker_given_none_uses_the_default(tmp_path: Path) -> None:
    app = tarry.App(f"sqlite:///{tmp_path}/tarry.db")
    async with app.worker() as worker:
        assert worker.concurrency == DEFAULT_CONCURRENCY["sqlite"] == 128
    async with app.worker(concurrency=5) as worker:
        assert worker.concurrency == 5
    await app.close()
