"""The collector of one App's metrics: this process's figures and the store's counts.

``collect()`` is what a registry calls, on any thread: it reads the store through
the App's blocking portal. ``exposition()`` is the server's path: it awaits the
read on the server's own loop, then renders the same families, so a scrape never
blocks the loop that runs the worker.

A store that does not answer within ``READ_TIMEOUT`` (down, or a scrape while it
is swamped) costs the scrape its store counts, never the scrape itself:
``tarry_store_up`` says 0 and this process's figures are still served.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..errors import StoreError
from ..store.metrics_records import RunCounts
from . import store_timing
from .engine import engine_metrics

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("tarry")

READ_TIMEOUT = 5.0
"""Seconds a scrape waits for the store's counts (Prometheus gives a scrape 10 s)."""

OPEN_STATUSES = ("queued", "running", "waiting")


class TarryCollector(Collector):
    def __init__(self, app: App, *, time_store: bool = True) -> None:
        self.app = app
        self.engine = engine_metrics()
        self._timed = time_store and store_timing.time_store(
            app._store, self.engine.store_seconds, self.engine.lock
        )

    def close(self) -> None:
        """Stop timing the store's operations (the process's counters go on)."""
        if self._timed:
            store_timing.untime(self.app._store)
            self._timed = False

    # -- what a registry calls ----------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        """The families without reading the store (a registry calls this on register)."""
        yield from self.engine.collect()
        yield from _store_families(None)

    def collect(self) -> Iterator[Metric]:
        counts = self.app._portal.call(self.read())
        yield from self.families(counts)

    # -- the server's path ---------------------------------------------------------------

    async def read(self) -> RunCounts | None:
        """The store's counts, or None when it did not answer (logged)."""
        try:
            store = await self.app._open()
            return await asyncio.wait_for(store.run_counts(), READ_TIMEOUT)
        except (StoreError, TimeoutError) as exc:
            log.warning("metrics: the store's counts could not be read (%s)", exc or "timeout")
            return None

    async def exposition(self) -> bytes:
        """The text format of every family, the store read on the calling loop."""
        return generate_latest(_Fixed(self.families(await self.read())))

    def families(self, counts: RunCounts | None) -> Iterator[Metric]:
        yield from self.engine.collect()
        slots = GaugeMetricFamily(
            "tarry_worker_slots_in_use", "Runs executing in this process's workers now."
        )
        slots.add_metric([], self.app._local.executing_count())
        yield slots
        yield from _store_families(counts)


def _store_families(counts: RunCounts | None) -> Iterator[Metric]:
    up = GaugeMetricFamily("tarry_store_up", "Whether the store answered this scrape's reads.")
    runs = GaugeMetricFamily(
        "tarry_runs",
        "Runs not ended, by workflow and status (ended runs: tarry_runs_ended_total).",
        labels=["workflow", "status"],
    )
    parked = GaugeMetricFamily(
        "tarry_runs_parked", "Parked runs by workflow and wait kind.", labels=["workflow", "kind"]
    )
    oldest = GaugeMetricFamily(
        "tarry_oldest_wait_seconds",
        "How long the run parked longest ago has waited, by workflow and wait kind.",
        labels=["workflow", "kind"],
    )
    up.add_metric([], 0 if counts is None else 1)
    if counts is not None:
        by_status = dict(counts.open)
        for group in counts.parked:
            key = (group.workflow, "waiting")
            by_status[key] = by_status.get(key, 0) + group.count
            parked.add_metric([group.workflow, group.kind], group.count)
            oldest.add_metric([group.workflow, group.kind], max(0.0, counts.now - group.oldest))
        for workflow in sorted({workflow for workflow, _ in by_status}):
            for status in OPEN_STATUSES:
                runs.add_metric([workflow, status], by_status.get((workflow, status), 0))
    yield from (up, runs, parked, oldest)


class _Fixed:
    """What ``generate_latest`` reads: families already made."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families
