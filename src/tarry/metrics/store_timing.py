"""A timer around each operation of one App's store (``tarry_store_operation_seconds``).

Every coroutine method of the Store protocol is replaced, on the store object
itself, by one that awaits the original and observes how long it took (from the
caller's side: the queue to SQLite's writer thread or PostgreSQL's pool is part
of it, as a run waiting on the store feels it). On the instance rather than a
proxy in front of it, so every holder of the store (the App, its workers, the
server) is timed with no lookup added to a call; ``untime`` puts the originals
back. Opening, closing and the loop bindings are not operations and stay as
they are.
"""

from __future__ import annotations

import inspect
import threading
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from typing import Any

from ..store.base import Store
from .families import Histograms

_NOT_OPERATIONS = frozenset({"open", "close", "bind_loop", "unbind_loop"})
_MARK = "_tarry_timed_operations"
"""The attribute a timed store keeps the names it replaced under."""

OPERATIONS = tuple(
    sorted(
        name
        for name, member in vars(Store).items()
        if inspect.iscoroutinefunction(member) and name not in _NOT_OPERATIONS
    )
)


def time_store(store: Store, seconds: Histograms, lock: threading.Lock) -> bool:
    """Time every operation of ``store`` into ``seconds`` (labelled by operation; its
    rows updated under ``lock``, ``EngineMetrics``'s);
    False when it is timed already (by another collector of the same App)."""
    if getattr(store, _MARK, None) is not None:
        return False
    replaced = []
    for name in OPERATIONS:
        method = getattr(store, name, None)
        if method is None:
            continue
        setattr(store, name, _timed(method, seconds, lock, name))
        replaced.append(name)
    setattr(store, _MARK, replaced)
    return True


def untime(store: Store) -> None:
    """Put back the operations ``time_store`` replaced."""
    for name in getattr(store, _MARK, None) or ():
        delattr(store, name)
    if hasattr(store, _MARK):
        delattr(store, _MARK)


def _timed(
    method: Callable[..., Awaitable[Any]], seconds: Histograms, lock: threading.Lock, name: str
) -> Callable[..., Awaitable[Any]]:
    clock = time.perf_counter
    bounds = seconds.bounds
    row: list[float] | None = None  # at the first call, so unused operations show no series

    async def timed(*args: Any, **kwargs: Any) -> Any:
        nonlocal row
        started = clock()
        try:
            return await method(*args, **kwargs)
        finally:
            took = clock() - started
            with lock:  # inlined ``seconds.add``: ten of these a run
                if row is None:
                    row = seconds.row((name,))
                row[bisect_left(bounds, took)] += 1
                row[-1] += took

    timed.__name__ = name
    return timed
