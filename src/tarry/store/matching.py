"""How events find their waiters without a scan: (event name, path, value) keys.

A waiter is filed under one equality it requires, ``path`` = ``value`` (for
``match="data.userId"``, the trigger's own ``data.userId``). An incoming event
offers every scalar leaf it has as a key, and the store looks each one up in
its index; only the waiters found that way, plus those with no indexable
equality, have their full condition evaluated.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import orjson

from ..expressions import compile_expression, resolve_path
from .base import Filing

MISSING = "\x00missing"
"""The key filed for an equality whose trigger side has no value: nothing matches it."""

_MAX_DEPTH = 8
_MAX_KEYS = 256


def canonical(value: Any) -> str:
    """One spelling per JSON scalar, so 1 and 1.0 file under the same key."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        value = int(value)
    return orjson.dumps(value).decode()


def leaf_keys(event: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``(path, canonical value)`` for the event's scalar leaves under ``data``, and
    its ``name`` and ``id``; bounded so a huge payload cannot blow up a lookup."""
    count = 0
    stack: list[tuple[str, Any, int]] = [("data", event.get("data"), 1)]
    for top in ("name", "id"):
        if top in event:
            yield top, canonical(event[top])
    while stack and count < _MAX_KEYS:
        path, node, depth = stack.pop()
        if isinstance(node, Mapping):
            if depth < _MAX_DEPTH:
                stack.extend(
                    (f"{path}.{k}", v, depth + 1) for k, v in node.items() if isinstance(k, str)
                )
        elif not isinstance(node, list):
            count += 1
            yield path, canonical(node)


def trigger_of(workflow: str, payload: bytes | None, trigger: bytes | None) -> dict[str, Any]:
    """The run's trigger event; for a run from ``App.start``, the stand-in
    ``{"name": workflow, "data": payload}``."""
    if trigger is not None:
        found: dict[str, Any] = orjson.loads(trigger)
        return found
    return {"name": workflow, "data": orjson.loads(payload) if payload is not None else {}}


def resolve_filing(filing: Filing, trigger: Mapping[str, Any]) -> Filing:
    """Fill in the value of an equality against the trigger (``match=``, or
    ``async.x == event.y``): a missing one can never match; a list or object
    cannot be filed, so the waiter is left to the scan of its event name."""
    if filing.event_path is None:
        return filing
    found, value = resolve_path(trigger, filing.event_path)
    if not found:
        return replace(filing, value=MISSING, event_path=None)
    if isinstance(value, Mapping | list):
        return replace(filing, path=None, value=None, event_path=None)
    return replace(filing, value=canonical(value), event_path=None)


def matches(
    path: str | None,
    value: str | None,
    expr: str | None,
    trigger: Mapping[str, Any] | None,
    incoming: Mapping[str, Any],
) -> bool:
    """The full check of one candidate waiter against an incoming event."""
    if path is not None:
        found, actual = resolve_path(incoming, path)
        if not found or isinstance(actual, Mapping | list) or canonical(actual) != value:
            return False
    return expr is None or compile_expression(expr).evaluate(trigger, incoming)
