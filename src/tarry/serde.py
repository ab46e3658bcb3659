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


def dumps(value: Any, *, what: str = "value", limit: int | None = None) -> bytes:
    """Encode ``value`` as JSON bytes; raise ``SerializationError`` naming ``what``."""
    try:
        data = orjson.dumps(value, default=_default, option=_OPTIONS)
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        raise SerializationError(f"{what} is not JSON-serializable: {exc}") from None
    if limit is not None and len(data) > limit:
        raise SerializationError(
            f"{what} is {len(data):,} bytes of JSON, over the limit of {limit:,} bytes"
        )
    return data


def loads(data: bytes | str | None) -> Any:
    if data is None:
        return None
    return orjson.loads(data)
