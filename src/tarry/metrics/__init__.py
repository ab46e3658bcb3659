"""Prometheus metrics: what the engine is doing, for ``/metrics`` or your own registry.

``tarry serve`` serves them at ``/metrics`` (behind its token when one is set);
elsewhere, ``REGISTRY.register(tarry.metrics.collector(app))`` puts them in a
registry of your own. They need ``prometheus-client``, which comes with
``tarry[metrics]``: this package imports it only when a collector is made, so an
install without it (and every worker) pays nothing.

Two sources, each where it is cheap:

- What happens in this process is counted as it happens, from the engine's
  lifecycle moments (``tarry.observe``): runs started and ended, step durations,
  attempts and retries, claim latency; store operation latency from a timer around
  the App's store; worker slots in use read at the scrape.
- What the store holds is counted at each scrape by indexed reads
  (``Store.run_counts``) that never read an ended run: runs queued and running
  by workflow, parked runs by workflow and wait kind, and the age of the oldest
  wait. Ended runs are counted where they end (``tarry_runs_ended_total``), not
  by scanning every run ever kept.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..app import App
    from .collect import TarryCollector

__all__ = ["METRICS_EXTRA", "MetricsExtraMissing", "collector", "require_prometheus"]

METRICS_EXTRA = "pip install 'tarry[metrics]'"


class MetricsExtraMissing(ConfigError):
    """Metrics were asked for in an install without ``tarry[metrics]``."""

    hint = f"install the metrics extra: {METRICS_EXTRA}"


def require_prometheus() -> None:
    """Raise ``MetricsExtraMissing`` unless ``prometheus_client`` can be imported."""
    if importlib.util.find_spec("prometheus_client") is None:
        raise MetricsExtraMissing(
            f"metrics need prometheus-client, which this install of tarry lacks; "
            f"{METRICS_EXTRA} brings it"
        )


def collector(app: App, *, time_store: bool = True) -> TarryCollector:
    """A Prometheus collector of ``app``'s metrics, to register in any registry.

    Making one starts counting this process's lifecycle moments (once per process,
    however many collectors) and, with ``time_store``, times every operation of
    ``app``'s store (``tarry_store_operation_seconds``). Each collection reads the
    store's counts once. Raises ``MetricsExtraMissing`` without ``tarry[metrics]``.
    """
    require_prometheus()
    from .collect import TarryCollector

    return TarryCollector(app, time_store=time_store)
