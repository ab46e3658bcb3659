"""JSON in and out of the store, with size limits and pydantic dumping."""

from __future__ import annotations

from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


class SerializationError(ValueError):
    """A value could not be stored as JSON; the message says which and why."""


def _default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # pydantic v2 models
        return dump(mode="json")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"type {type(value).__name__} is not JSON-serializable")


_INT_RANGE = (-(2**63), 2**64 - 1)


def _not_json(value: Any, path: str = "") -> str | None:
    """Where in ``value`` a number JSON cannot carry faithfully sits, and what it is:
    NaN and infinities (orjson would write null) and integers beyond 64 bits."""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return f"{value!r} at {path or 'the top'} (NaN and infinity are not JSON)"
    elif isinstance(value, int) and not isinstance(value, bool):
        if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            return f"the integer {value} at {path or 'the top'} (beyond 64 bits)"
    elif isinstance(value, dict):
        for key, item in value.items():
            found = _not_json(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _not_json(item, f"{path}[{index}]")
            if found:
                return found
    return None


def dumps(value: Any, *, what: str = "value", limit: int | None = None) -> bytes:
    """Encode ``value`` as JSON bytes; raise ``SerializationError`` naming ``what``."""
    try:
        data = orjson.dumps(value, default=_default, option=_OPTIONS)
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        detail = _safe_find(value) or str(exc)
        raise SerializationError(f"{what} is not JSON-serializable: {detail}") from None
    # orjson writes NaN and infinity as null: refuse them instead. (find, not "in": a
    # bytes "in" first tries its operand as an int, and formats the TypeError.)
    if data.find(b"null") != -1:
        found = _safe_find(value)
        if found:
            raise SerializationError(f"{what} is not JSON-serializable: {found}")
    if limit is not None and len(data) > limit:
        raise SerializationError(
            f"{what} is {len(data):,} bytes of JSON, over the limit of {limit:,} bytes"
        )
    return data


def loads(data: bytes | str | None) -> Any:
    if data is None:
        return None
    return orjson.loads(data)


def _safe_find(value: Any) -> str | None:
    try:
        return _not_json(value)
    except RecursionError:
        return None
