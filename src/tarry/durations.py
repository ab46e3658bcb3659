"""Durations and deadlines: ``"1h30m"``, ``timedelta``, seconds, aware datetimes."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TypeAlias

Duration: TypeAlias = timedelta | int | float | str
Timeout: TypeAlias = Duration | datetime | None

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: Duration) -> float:
    """Return ``value`` as seconds; raise ``ValueError`` naming it when malformed.

    Strings are one or more ``<number><unit>`` parts with the units ms, s, m,
    h, d and w (case-sensitive, so ``"5M"`` is an error rather than a guess).
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: expected a timedelta, seconds or '30s'")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_string(value)
    else:
        raise ValueError(
            f"invalid duration {value!r}: expected a timedelta, seconds or a string like '30s'"
        )
    if seconds != seconds or seconds < 0:  # NaN or negative
        raise ValueError(f"invalid duration {value!r}: must be zero or positive")
    return seconds


def _parse_string(text: str) -> float:
    stripped = text.strip()
    pos, total = 0, 0.0
    while pos < len(stripped):
        part = _PART.match(stripped, pos)
        if part is None:
            raise ValueError(
                f"invalid duration {text!r}: expected parts like '500ms', '30s', '5m', "
                "'24h', '3d', '1w' or '1h30m' (units are case-sensitive)"
            )
        total += float(part.group(1)) * _UNITS[part.group(2)]
        pos = part.end()
    if not stripped:
        raise ValueError(f"invalid duration {text!r}: empty")
    return total


def check_aware(when: datetime, what: str = "datetime") -> datetime:
    if when.tzinfo is None or when.tzinfo.utcoffset(when) is None:
        raise ValueError(
            f"naive {what} {when.isoformat()!r}: pass a timezone-aware datetime, "
            "e.g. datetime.now(timezone.utc)"
        )
    return when


def deadline(timeout: Timeout, now: float) -> float | None:
    """Turn a wait's ``timeout`` into an absolute epoch deadline, or ``None``; a
    duration counts from ``now`` (the clock's)."""
    if timeout is None:
        return None
    if isinstance(timeout, datetime):
        return check_aware(timeout, "timeout").timestamp()
    return now + parse_duration(timeout)
