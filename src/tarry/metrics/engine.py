"""This process's figures, counted from the engine's lifecycle moments as they happen.

A run reaches about six moments and ten store operations, each on the hot path
of a worker. ``prometheus_client``'s instruments cost a microsecond or more per
update, behind layers of locks; these are plain numbers (``families``) under one
lock, updated by one listener call per moment, and turned into Prometheus
families only at a scrape. Moments are counted at once rather than queued: a
queue holds thousands of moments alive between folds, and the garbage collector
pays for walking them (measured: more than the counting itself).

One set per process, fed by one listener, however many collectors are made: a
moment is counted once.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from .. import observe
from .families import Counters, Histograms

STEP_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
CLAIM_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
STORE_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                 0.5, 1, 2.5)  # fmt: skip
ATTEMPTS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20)
_ENDS = frozenset({"completed", "failed", "cancelled"})


class EngineMetrics(Collector):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        """Held by every update and by a collection: moments arrive on any thread."""
        self._step_rows: dict[str, tuple[list[float], list[float]]] = {}
        """Per workflow, the rows of a completed step's duration and attempts."""
        self.runs_started = Counters(
            "tarry_runs_started", "Runs started by this process.", ["workflow"]
        )
        self.runs_ended = Counters(
            "tarry_runs_ended",
            "Runs that ended in this process, by how they ended.",
            ["workflow", "status"],
        )
        self.step_seconds = Histograms(
            "tarry_step_duration_seconds",
            "How long a step.run that completed took, its last attempt.",
            ["workflow"],
            STEP_SECONDS,
        )
        self.step_attempts = Histograms(
            "tarry_step_attempts",
            "Attempts a step.run took, when it completed or failed for good.",
            ["workflow", "outcome"],
            ATTEMPTS,
        )
        self.step_retries = Counters(
            "tarry_step_retries", "Failed step attempts that will be retried.", ["workflow"]
        )
        self.claim_seconds = Histograms(
            "tarry_claim_latency_seconds",
            "From when a run became due to when a worker of this process claimed it.",
            ["workflow"],
            CLAIM_SECONDS,
        )
        self.store_seconds = Histograms(
            "tarry_store_operation_seconds",
            "How long each store operation took, awaited by this process.",
            ["operation"],
            STORE_SECONDS,
        )
        self._families: list[Counters | Histograms] = [
            self.runs_started, self.runs_ended, self.step_seconds, self.step_attempts,
            self.step_retries, self.claim_seconds, self.store_seconds,
        ]  # fmt: skip

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            families = [family.collect() for family in self._families]
        yield from families

    def listen(self, moment: observe.Moment) -> None:
        kind, workflow = moment.kind, moment.workflow or ""
        with self.lock:
            if kind == "step_completed":  # three a run, say: the rows are held at hand
                rows = self._step_rows.get(workflow)
                if rows is None:
                    rows = self._step_rows[workflow] = (
                        self.step_seconds.row((workflow,)),
                        self.step_attempts.row((workflow, "completed")),
                    )
                took = moment.fields.get("duration_ms")
                if took is not None:
                    took /= 1000
                    rows[0][bisect_left(STEP_SECONDS, took)] += 1
                    rows[0][-1] += took
                attempt = moment.attempt
                if attempt is not None:
                    rows[1][bisect_left(ATTEMPTS, attempt)] += 1
                    rows[1][-1] += attempt
            elif kind == "claimed":
                latency = moment.fields.get("claim_latency")
                if latency is not None:
                    self.claim_seconds.add((workflow,), latency)
            elif kind == "started":
                self.runs_started.add((workflow,))
            elif kind in _ENDS:
                self.runs_ended.add((workflow, kind))
            elif kind == "step_retrying":
                self.step_retries.add((workflow,))
            elif kind == "step_failed" and moment.attempt is not None:
                self.step_attempts.add((workflow, "failed"), moment.attempt)


_engine: EngineMetrics | None = None
_lock = threading.Lock()


def engine_metrics() -> EngineMetrics:
    """This process's families, listening from the first call on."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = EngineMetrics()
            observe.add_listener(_engine.listen)
        return _engine
