"""Every SQLite statement that names its runs by id finds them through the id index.

SQLite has no statistics unless ANALYZE runs, and without them it may prefer an index
on an equality it can also apply (``status = 'waiting'``) to the ids it was handed:
the set-based resume of an event's waiters then walked every parked run (2.8 ms per
``send_event`` among 20,000 parked, 17 ms among 100,000, where it is a lookup per
run). Such a condition is written ``+status`` to keep it off its index; this checks
that no statement is left that the planner takes the wrong way.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

from tarry.store import open_store
from tarry.store.sqlite import STATEMENTS

_BY_ID = re.compile(r"\bid (IN \(SELECT value FROM json_each|= \?)")
_RUNS = re.compile(r"^(SEARCH|SCAN) (runs|r)\b")


class _AnyParams(dict[str, str]):
    """Every parameter a statement names, bound to an empty JSON array."""

    def __missing__(self, key: str) -> str:
        return "[]"


def test_runs_named_by_id_are_found_by_id(tmp_path: Path) -> None:
    path = tmp_path / "plans.db"
    store = open_store(f"sqlite:///{path}")
    asyncio.run(store.open())
    asyncio.run(store.close())
    checked = []
    with sqlite3.connect(path) as conn:
        conn.create_function("tarry_index_value", 1, lambda value: value, deterministic=True)
        for name, statements in STATEMENTS.items():
            for statement, values in statements:  # as the store runs them
                if not _BY_ID.search(statement):
                    continue
                explained = conn.execute(f"EXPLAIN QUERY PLAN {statement}", values(_AnyParams()))
                plan = [row[3] for row in explained]
                reads = [step for step in plan if _RUNS.match(step)]
                for step in reads:
                    assert "sqlite_autoindex_runs_1 (id=?)" in step, (name, statement, plan)
                if reads:
                    checked.append(name)
    # The statements this guards, among the others: the set-based resume of an
    # event's waiters, and the dashboard's read of why queued runs wait.
    assert {"resolve_waits", "queued_priorities", "save_step_leased", "finish_orphan"} <= set(
        checked
    )
