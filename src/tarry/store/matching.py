"""How events find their waiters without a scan: (event name, path, value) keys.

A waiter is filed under one equality it requires, ``path`` = ``value`` (for
``match="data.userId"``, the trigger's own ``data.userId``). An incoming event
asks the index which paths its name's waiters are filed under (a handful,
found by seeking, never by reading every waiter), reads its own value at each
of those paths, whatever its depth, and looks each (path, value) up; only the
waiters found that way, plus those with no indexable equality, have their full
condition evaluated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from ..expressions import compile_expression, resolve_path
from .base import Filing

MISSING = "#missing"
"""The key filed for an equality whose trigger side has no value: nothing matches it
(canonical JSON never starts with ``#``)."""

_LONGEST_KEY = 128
"""Values longer than this many bytes are filed under their digest, so that an index
entry stays small whatever the payload holds."""


def canonical(value: Any) -> str:
    """One spelling per JSON scalar, so 1 and 1.0 file under the same key."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        value = int(value)
    return orjson.dumps(value).decode()


def index_value(text: str) -> str:
    """The index's spelling of a canonical value: itself, or a digest when long
    (the full condition is checked on every candidate, so a digest suffices)."""
    encoded = text.encode()
    if len(encoded) <= _LONGEST_KEY:
        return text
    return "#sha256:" + hashlib.sha256(encoded).hexdigest()


def value_at(event: Mapping[str, Any], path: str) -> str | None:
    """The index value of the scalar at ``path`` in ``event``; None when there is
    none there (or a list or object, which no equality is filed under)."""
    found, value = resolve_path(event, path)
    if not found or isinstance(value, Mapping | list):
        return None
    return index_value(canonical(value))


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


def residue(path: str | None, expr: str | None) -> str | None:
    """What is left to evaluate of ``expr`` once the equality on ``path`` it is filed
    under holds: nothing for a ``match=`` condition (it is that equality, compared
    here on canonical JSON as CEL compares it), else the whole expression."""
    if path is not None and expr == f"async.{path} == event.{path}":
        return None
    return expr
