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
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Histogram

from ..store.base import Store

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


def time_store(store: Store, seconds: Histogram) -> bool:
    """Time every operation of ``store`` into ``seconds`` (labelled by operation);
    False when it is timed already (by another collector of the same App)."""
    if getattr(store, _MARK, None) is not None:
        return False
    replaced = []
    for name in OPERATIONS:
        method = getattr(store, name, None)
        if method is None:
            continue
        setattr(store, name, _timed(method, seconds, name))
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
    method: Callable[..., Awaitable[Any]], seconds: Histogram, name: str
) -> Callable[..., Awaitable[Any]]:
    clock = time.perf_counter
    observe: Callable[[float], None] | None = None  # the labelled child, at the first call

    async def timed(*args: Any, **kwargs: Any) -> Any:
        nonlocal observe
        started = clock()
        try:
            return await method(*args, **kwargs)
        finally:
            if observe is None:
                observe = seconds.labels(name).observe
            observe(clock() - started)

    timed.__name__ = name
    return timed
