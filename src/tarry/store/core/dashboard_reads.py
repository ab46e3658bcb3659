"""The dashboard's store operations: its signing keys, the runs search, what events
did and what parked runs wait on.

Reads only, apart from the signing keys: the first server to ask for a key stores
the one it offers, and every server after it (a restart, another process on the
same database) gets that one, so sessions and forms outlive a process.
"""

from __future__ import annotations

from ..base import EventRow
from ..dashboard_records import EventLinks, RunSearch, RunWaits, SearchResult, WaitCondition
from ..rows import run_row
from .port import Tx

LINK_CANDIDATES = 5000
"""At most this many runs and wait steps are read to link events to their runs."""


async def dashboard_key(tx: Tx, name: str, offer: str) -> str:
    await tx.run("insert_dashboard_key", {"name": name, "value": offer, "now": tx.now})
    row = await tx.one("select_dashboard_key", {"name": name})
    assert row is not None  # inserted above, or there already
    return str(row[0])


async def search_runs(
    tx: Tx, search: RunSearch, limit: int, cursor: int | None, counts: bool
) -> SearchResult:
    params = search.params()
    rows = await tx.all("search_runs", {**params, "cursor": cursor, "limit": limit})
    by_status: dict[str, int] = {}
    if counts:
        del params["status"]
        for status, count in await tx.all("count_runs_by_status", params):
            by_status[str(status)] = int(count)
    return SearchResult([run_row(row) for row in rows], by_status)


async def event_links(tx: Tx, since: float, until: float) -> EventLinks:
    window = {"since": since, "until": until, "limit": LINK_CANDIDATES}
    started = [(str(r[0]), bytes(r[1])) for r in await tx.all("runs_triggered_between", window)]
    resumed = [
        (str(r[0]), str(r[1]), bytes(r[2])) for r in await tx.all("event_steps_ended_since", window)
    ]
    return EventLinks(started, resumed)


async def run_waits(tx: Tx, run_id: str) -> RunWaits | None:
    found = await tx.one("select_run_trigger", {"id": run_id})
    if found is None:
        return None
    specs = {
        str(key): str(spec)
        for key, spec in await tx.all("waiting_step_specs", {"run_id": run_id})
        if spec is not None
    }
    pending = [
        WaitCondition(*row) for row in await tx.all("run_wait_conditions", {"run_id": run_id})
    ]
    return RunWaits(None if found[0] is None else bytes(found[0]), specs, pending)


async def get_event(tx: Tx, event_id: str) -> EventRow | None:
    row = await tx.one("select_event", {"id": event_id})
    return None if row is None else EventRow(int(row[0]), row[1], row[2], bytes(row[3]), row[4])
