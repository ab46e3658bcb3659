"""The API's request bodies: what a client may send, checked before the App sees it.

Request models forbid unknown fields and use strict booleans, so a typo or a
wrong type is a 422 naming the field instead of a silently ignored value. A
bulk operation's filter (``since``/``until``) is parsed here too, and the
pattern a page's cursor must fit. The response bodies are in ``responses``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    field_validator,
)

from ..names import MAX_NAME
from .responses import RunStatusName

# A cursor is a run's sequence number: decimal ASCII digits that fit a signed 64-bit
# integer (``str.isdigit`` also takes "²" and the store cannot bind 20 digits).
CURSOR_PATTERN = r"^[0-9]{1,18}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# A name the store indexes (names.py): the document states the rule, and the App
# enforces it, so that a name past it is a 400 naming the field, as from the App.
_NAME_RULE: dict[str, JsonValue] = {"maxLength": MAX_NAME, "pattern": "^[^\\u0000]*$"}


def _name(description: str, **options: Any) -> Any:
    return Field(
        min_length=1,
        description=f"{description}: at most {MAX_NAME} characters, no NUL",
        json_schema_extra=_NAME_RULE,
        **options,
    )


# A duration as tarry.durations reads it: one to eight <number><unit> parts.
DURATION_PATTERN = r"^([0-9]{1,9}(\.[0-9]{1,9})?(ms|s|m|h|d|w)){1,8}$"


class StartBody(_Body):
    workflow: str = _name("a registered workflow id")
    payload: Any = None
    run_id: str | None = _name("the run's id (a second start with it is ignored)", default=None)
    delay: str | None = Field(
        default=None,
        max_length=64,
        pattern=DURATION_PATTERN,
        description="start no sooner than this long from now: a duration such as '90s', "
        "'1h30m' or '7d' (not with start_at)",
    )
    start_at: AwareDatetime | None = Field(
        default=None, description="start no sooner than this time, with its offset (not with delay)"
    )


class SignalBody(_Body):
    signal: str = _name("the signal key")
    data: Any = Field(
        default_factory=dict,
        description="any JSON value but null (null is what a wait returns on timeout)",
        json_schema_extra={"not": {"type": "null"}},
    )
    strict: StrictBool = False


class EventBody(_Body):
    name: str = _name("the event name")
    data: Any = Field(default_factory=dict)
    id: str | None = _name("the event id (a repeat within 24 h is ignored)", default=None)


class MessageBody(_Body):
    name: str = _name("the message name")
    data: Any = Field(default_factory=dict)


class CancelBody(_Body):
    reason: str | None = None
    children: StrictBool = Field(
        default=True, description="also cancel the runs it invoked that have not ended"
    )


# Who did it, as the run's changes record it (the App's limit).
_BY = Field(default=None, max_length=256, description="who did it: at most 256 characters")


class RetryBody(_Body):
    by: str | None = _BY


class ForkBody(_Body):
    from_step: str = _name("the step to run anew; the steps recorded before it are copied")
    payload: Any = Field(
        default=None, description="the new run's payload (default: the original's)"
    )
    run_id: str | None = _name("the new run's id (default: a new one)", default=None)
    by: str | None = _BY


# When a run was created, for a bulk filter: an RFC 3339 date-time with its offset, or a
# duration back from now ("1d": created within the last day).
DATE_TIME_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_WHEN_SCHEMA: dict[str, JsonValue] = {
    "anyOf": [
        {"type": "string", "format": "date-time", "pattern": DATE_TIME_PATTERN},
        {"type": "string", "pattern": DURATION_PATTERN},
        {"type": "null"},
    ]
}


def parse_when(value: str) -> datetime | str:
    """A bulk filter's ``since``/``until``: an aware datetime, or the duration as given.
    ValueError for anything else."""
    if re.fullmatch(DURATION_PATTERN, value):
        return value
    if not re.fullmatch(DATE_TIME_PATTERN, value):
        raise ValueError(
            "expected a duration back from now such as '1d' or '2h30m', or an RFC 3339 "
            "date-time with its offset such as '2025-01-31T08:00:00Z'"
        )
    text = value.upper().replace("Z", "+00:00")
    date, _, rest = text.partition("T")
    clock, offset = rest[:-6], rest[-6:]
    whole, _, fraction = clock.partition(".")
    if whole.endswith(":60"):  # a leap second: the second before it
        whole = whole[:-2] + "59"
    fraction = f".{fraction[:6]:0<6}" if fraction else ""
    try:
        return datetime.fromisoformat(f"{date}T{whole}{fraction}{offset}")
    except ValueError as exc:
        raise ValueError(f"not a valid date-time: {exc}") from None


def _filter_given(name: str) -> dict[str, JsonValue]:
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


_FILTERS = ("workflow", "status", "since", "until")


class BulkBody(_Body):
    """Which runs: at least one filter, or ``all``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                *(_filter_given(name) for name in _FILTERS),
                {"required": ["all"], "properties": {"all": {"const": True}}},
            ]
        },
    )

    workflow: str | None = _name("only runs of this workflow", default=None)
    since: str | None = Field(
        default=None,
        description="only runs created at or after this: a date-time, or a duration ago ('1d')",
        json_schema_extra=_WHEN_SCHEMA,
    )
    until: str | None = Field(
        default=None,
        description="only runs created before this: a date-time, or a duration ago ('1h')",
        json_schema_extra=_WHEN_SCHEMA,
    )
    dry_run: StrictBool = Field(default=False, description="only count the runs it would apply to")
    all: StrictBool = Field(
        default=False, description="apply to every run: required when no filter is given"
    )

    @field_validator("since", "until")
    @classmethod
    def _when(cls, value: str | None) -> str | None:
        if value is not None:
            parse_when(value)
        return value

    def has_filter(self) -> bool:
        return any(getattr(self, name) is not None for name in _FILTERS)


class BulkRetryBody(BulkBody):
    status: RunStatusName | None = Field(
        default=None, description="only runs in this status (default: failed)"
    )
    by: str | None = _BY


class BulkCancelBody(BulkBody):
    status: RunStatusName | None = Field(
        default=None, description="only runs in this status (runs that ended are never touched)"
    )
    reason: str | None = None


class BulkForkBody(BulkBody):
    from_step: str = _name("the step each run is forked from")
    status: RunStatusName | None = Field(
        default=None, description="only runs in this status (only ended runs are forked)"
    )
    by: str | None = _BY
