"""The runs list's search: its query parameters checked into a store search.

Each filter a person can type is checked, and a bad one is an error that says what
was wrong and what to type instead, never silently dropped: a status not in the
list, a time that is neither a duration ago nor a date, an until before since.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from ..durations import parse_duration
from ..models import RUN_STATUSES
from ..store.dashboard_records import RunSearch
from .bodies import CURSOR_PATTERN

FIELDS = ("q", "workflow", "status", "since", "until", "version")
"""The search's query parameters, as the form names them."""
LONGEST = 256


class BadSearch(ValueError):
    """A search filter that could not be used; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Query:
    """The search as typed (to fill the form again) and what it means."""

    typed: dict[str, str]
    search: RunSearch
    cursor: int | None

    def url(self, **extra: str) -> str:
        """The runs list with this search (and ``extra`` parameters)."""
        shown = {k: v for k, v in {**self.typed, **extra}.items() if v}
        return "/?" + urlencode(shown) if shown else "/"

    @property
    def narrowed(self) -> bool:
        return any(self.typed.values())


def typed_of(params: Any) -> dict[str, str]:
    """The search fields from a request's query parameters, trimmed."""
    return {name: str(params.get(name, "")).strip() for name in FIELDS}


def parse_query(typed: dict[str, str], cursor: str, now: float) -> Query:
    """Check the typed fields; ``BadSearch`` says which one is wrong and why."""
    for name, value in typed.items():
        if len(value) > LONGEST or "\x00" in value:
            raise BadSearch(f"{name} is too long or holds a NUL character: shorten it")
    status = typed["status"]
    if status and status not in RUN_STATUSES:
        raise BadSearch(
            f"there is no run status {status!r}: choose one of {', '.join(RUN_STATUSES)}, "
            "or leave it empty for any"
        )
    since = parse_time(typed["since"], now, "since")
    until = parse_time(typed["until"], now, "until")
    if since is not None and until is not None and until <= since:
        raise BadSearch("until must be later than since: swap them, or leave one empty")
    search = RunSearch(
        status=status or None,
        id_prefix=typed["q"] or None,
        workflow_prefix=typed["workflow"] or None,
        version=typed["version"] or None,
        since=since,
        until=until,
    )
    found = cursor if re.fullmatch(CURSOR_PATTERN, cursor) else ""
    return Query(typed, search, int(found) if found else None)


def parse_time(value: str, now: float, what: str) -> float | None:
    """A duration ago (``30m``, ``1d``) or a date and time (``2026-12-01``,
    ``2026-12-01T09:30``, with an offset or taken as UTC) as epoch seconds."""
    if not value:
        return None
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError:
        raise BadSearch(
            f"{what} {value!r} is neither a duration ago (30m, 12h, 7d) nor a date and time "
            "(2026-12-01 or 2026-12-01T09:30, UTC unless it gives an offset)"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
