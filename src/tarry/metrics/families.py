"""Counters and histograms kept as plain numbers, turned into Prometheus families when
collected. ``EngineMetrics`` updates and collects them under its one lock, so they
take none of their own."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric


class Counters:
    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.values: dict[tuple[str, ...], float] = {}

    def add(self, key: tuple[str, ...], amount: float = 1.0) -> None:
        self.values[key] = self.values.get(key, 0.0) + amount

    def collect(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, value in sorted(self.values.items()):
            family.add_metric(list(key), value)
        return family


class Histograms:
    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.bounds = tuple(float(bound) for bound in buckets)
        self._les = [repr(bound) for bound in self.bounds] + ["+Inf"]  # 2.0, 0.001: as Go
        self.rows: dict[tuple[str, ...], list[float]] = {}
        """Per label values: a count per bucket (the last above every bound), then the sum."""

    def row(self, key: tuple[str, ...]) -> list[float]:
        """The numbers of ``key``, for a caller that adds to them itself (a hot path
        spared a call per update): ``row[bisect_left(bounds, value)] += 1`` (the first
        bound >= value is its bucket) and ``row[-1] += value``."""
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0.0] * (len(self.bounds) + 2)
        return row

    def add(self, key: tuple[str, ...], value: float) -> None:
        row = self.row(key)
        row[bisect_left(self.bounds, value)] += 1
        row[-1] += value

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, row in sorted(self.rows.items()):
            cumulative, buckets = 0.0, []
            for le, count in zip(self._les, row[:-1], strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(list(key), buckets, row[-1])
        return family
