"""This process's figures, counted as the engine tells its lifecycle moments.

One set of instruments per process, fed by one ``tarry.observe`` listener,
however many collectors are made: a moment is counted once. The instruments
belong to no registry; each collector yields them with the store's counts.

The listener runs on the thread that reached the moment, once per moment: it
looks up the labelled child it needs in a dict of its own (cheaper than
``labels()``) and never raises into the engine (``observe`` guards it too).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from .. import observe

STEP_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
CLAIM_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
STORE_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                 0.5, 1, 2.5)  # fmt: skip
ATTEMPTS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20)


class EngineMetrics(Collector):
    def __init__(self) -> None:
        self.runs_started = Counter(
            "tarry_runs_started", "Runs started by this process.", ["workflow"], registry=None
        )
        self.runs_ended = Counter(
            "tarry_runs_ended",
            "Runs that ended in this process, by how they ended.",
            ["workflow", "status"],
            registry=None,
        )
        self.step_seconds = Histogram(
            "tarry_step_duration_seconds",
            "How long a step.run that completed took, its last attempt.",
            ["workflow"],
            buckets=STEP_SECONDS,
            registry=None,
        )
        self.step_attempts = Histogram(
            "tarry_step_attempts",
            "Attempts a step.run took, when it completed or failed for good.",
            ["workflow", "outcome"],
            buckets=ATTEMPTS,
            registry=None,
        )
        self.step_retries = Counter(
            "tarry_step_retries", "Failed step attempts that will be retried.", ["workflow"],
            registry=None,
        )  # fmt: skip
        self.claim_seconds = Histogram(
            "tarry_claim_latency_seconds",
            "From when a run became due to when a worker of this process claimed it.",
            ["workflow"],
            buckets=CLAIM_SECONDS,
            registry=None,
        )
        self.store_seconds = Histogram(
            "tarry_store_operation_seconds",
            "How long each store operation took, awaited by this process.",
            ["operation"],
            buckets=STORE_SECONDS,
            registry=None,
        )
        self._instruments: list[MetricWrapperBase] = [
            self.runs_started, self.runs_ended, self.step_seconds, self.step_attempts,
            self.step_retries, self.claim_seconds, self.store_seconds,
        ]  # fmt: skip
        self._children: dict[tuple[object, ...], Any] = {}
        self._on: dict[str, Callable[[observe.Moment], None]] = {
            "started": self._started,
            "claimed": self._claimed,
            "step_completed": self._step_completed,
            "step_retrying": self._step_retrying,
            "step_failed": self._step_failed,
            "completed": self._ended,
            "failed": self._ended,
            "cancelled": self._ended,
        }

    def collect(self) -> Iterator[Any]:
        for instrument in self._instruments:
            yield from instrument.collect()

    def listen(self, moment: observe.Moment) -> None:
        handle = self._on.get(moment.kind)
        if handle is not None:
            handle(moment)

    def child(self, instrument: MetricWrapperBase, *labels: str) -> Any:
        """``instrument.labels(*labels)``, remembered."""
        key = (id(instrument), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = instrument.labels(*labels)
        return found

    def _started(self, moment: observe.Moment) -> None:
        self.child(self.runs_started, moment.workflow or "").inc()

    def _claimed(self, moment: observe.Moment) -> None:
        latency = moment.fields.get("claim_latency")
        if latency is not None:
            self.child(self.claim_seconds, moment.workflow or "").observe(latency)

    def _step_completed(self, moment: observe.Moment) -> None:
        workflow = moment.workflow or ""
        took = moment.fields.get("duration_ms")
        if took is not None:
            self.child(self.step_seconds, workflow).observe(took / 1000)
        if moment.attempt is not None:
            self.child(self.step_attempts, workflow, "completed").observe(moment.attempt)

    def _step_retrying(self, moment: observe.Moment) -> None:
        self.child(self.step_retries, moment.workflow or "").inc()

    def _step_failed(self, moment: observe.Moment) -> None:
        if moment.attempt is not None:
            self.child(self.step_attempts, moment.workflow or "", "failed").observe(moment.attempt)

    def _ended(self, moment: observe.Moment) -> None:
        self.child(self.runs_ended, moment.workflow or "", moment.kind).inc()


_engine: EngineMetrics | None = None
_lock = threading.Lock()


def engine_metrics() -> EngineMetrics:
    """This process's instruments, listening from the first call on."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = EngineMetrics()
            observe.add_listener(_engine.listen)
        return _engine
