"""Cron schedules: ``tarry.cron(...)``, its slots, and which of them to start.

A schedule is a cron expression read in a time zone. Its *slots* are the instants
the expression names there, computed by cronsim, which follows Debian's cron
(including its handling of daylight saving time: a fixed-time job whose time is
skipped in spring runs right after the jump; one whose time repeats in autumn runs
once; a job every hour or more often runs on the local times that exist). A slot is
an instant, kept as epoch seconds, and named in UTC: ``cron:<workflow>:<UTC time>``
is the id of the one run that slot starts, whichever worker starts it.

What a worker starts after a gap (no worker ran, a process stood still) is decided
here, as a pure function of the schedule, the time the store says was covered last
and now (``plan``); the worker-side loop is ``scheduler.py``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .durations import Duration, check_aware, parse_duration
from .errors import ConfigError

CatchUp = Literal["latest", "all", "none"]
CATCH_UPS: tuple[CatchUp, ...] = get_args(CatchUp)

MAX_CATCH_UP = 1000
"""Missed slots ``catch_up="all"`` starts at most (the newest ones); older ones are
skipped and logged."""
ON_TIME = 60.0
"""Seconds after its time within which a slot still counts as on time, not missed: a
worker waking a little late, or one started just after a slot, still starts it."""
RUN_ID_PREFIX = "cron:"
_MAX_RUN_ID = 256
_STAMP = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True, slots=True)
class Cron:
    """``on=tarry.cron("0 9 * * MON", tz="Europe/Berlin", catch_up="latest")``: start
    one run of the workflow at each time the expression names in ``tz``."""

    expression: str
    tz: str = "UTC"
    catch_up: CatchUp = "latest"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)  # cached by zoneinfo: the same object each time

    def __str__(self) -> str:
        return f"{self.expression} ({self.tz})"

    def next_after(self, when: float) -> float | None:
        """The first slot strictly after ``when`` (None: none in the next 50 years)."""
        start = datetime.fromtimestamp(int(when // 1), self.zone)  # slots are whole seconds
        try:
            return next(CronSim(self.expression, start)).timestamp()
        except StopIteration:
            return None

    def newest(self, until: float, after: float | None, limit: int) -> list[float]:
        """Up to ``limit`` slots in ``(after, until]``, the newest ones, oldest first."""
        # Iterating backwards from one second past the last whole second makes that
        # second the first candidate.
        start = datetime.fromtimestamp(int(until // 1) + 1, self.zone)
        found: list[float] = []
        for slot in CronSim(self.expression, start, reverse=True):
            stamp = slot.timestamp()
            if (after is not None and stamp <= after) or len(found) == limit:
                break
            found.append(stamp)
        found.reverse()
        return found

    def payload(self, slot: float) -> dict[str, Any]:
        """What a slot's run gets as ``ctx.payload``."""
        return {
            "scheduled_at": stamp(slot),
            "local_time": datetime.fromtimestamp(slot, self.zone).isoformat(),
            "cron": self.expression,
            "tz": self.tz,
        }


def cron(expression: str, *, tz: str | ZoneInfo = "UTC", catch_up: CatchUp = "latest") -> Cron:
    """A cron schedule for ``@app.workflow(on=...)``: five fields (minute hour
    day-of-month month day-of-week), or six with seconds first; names (``MON``,
    ``JAN``), ranges, steps, ``L``, ``LW``, ``MON#1`` and ``5L`` as cronsim reads them.
    ``tz``: an IANA zone name (``"Europe/Berlin"``). ``catch_up``: which slots missed
    while no worker ran to start: ``"latest"`` (the newest), ``"all"`` (at most
    1,000, the newest) or ``"none"``. A bad value is a ``ConfigError`` naming it."""
    if not isinstance(expression, str) or not expression.strip():
        raise ConfigError(f"tarry.cron needs a cron expression string, got {expression!r}")
    zone_name = _zone_name(tz)
    if catch_up not in CATCH_UPS:
        raise ConfigError(
            f"tarry.cron catch_up must be one of {', '.join(map(repr, CATCH_UPS))}, "
            f"got {catch_up!r}"
        )
    spec = Cron(" ".join(expression.split()), zone_name, catch_up)
    reference = datetime(2000, 1, 1, tzinfo=spec.zone)
    try:
        CronSim(spec.expression, reference)
    except CronSimError as exc:
        raise ConfigError(
            f"invalid cron expression {expression!r}: {exc} (expected five fields, "
            "minute hour day-of-month month day-of-week, or six with seconds first)"
        ) from None
    if spec.next_after(reference.timestamp()) is None:
        raise ConfigError(f"cron expression {expression!r} names no time in 50 years")
    return spec


def _zone_name(tz: object) -> str:
    if isinstance(tz, ZoneInfo):
        tz = tz.key
    if not isinstance(tz, str) or not tz:
        raise ConfigError(f"tarry.cron tz must be an IANA time zone name, got {tz!r}")
    try:
        ZoneInfo(tz)
    except ZoneInfoNotFoundError:
        raise ConfigError(
            f"unknown time zone {tz!r} in tarry.cron: expected an IANA name such as "
            "'Europe/Berlin' or 'UTC' (if the name is right, this system has no time zone "
            "database: pip install tzdata)"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"invalid time zone {tz!r} in tarry.cron: {exc}") from None
    return tz


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do about a schedule now: the slots to start (oldest first), how many
    due slots are skipped, and the time up to which every slot is dealt with."""

    start: list[float]
    skipped: int
    covered: float


def plan(spec: Cron, covered: float | None, now: float) -> Plan:
    """The slots of ``spec`` to start at ``now``, given that every slot up to
    ``covered`` was dealt with (None: the schedule is new, so nothing before now is
    owed). A slot within ``ON_TIME`` of now is on time and always started; older
    due slots were missed, and ``catch_up`` says which of them start."""
    if covered is None:
        return Plan([], 0, now)
    if covered >= now:
        return Plan([], 0, covered)
    limit = MAX_CATCH_UP + 1 if spec.catch_up == "all" else 1
    due = spec.newest(now, covered, limit)
    if not due:
        return Plan([], 0, covered)
    newest = due[-1]
    if spec.catch_up == "all":
        start = due[-MAX_CATCH_UP:]
    elif spec.catch_up == "none" and now - newest > ON_TIME:
        start = []
    else:
        start = [newest]
    first = start[0] if start else newest + 1
    return Plan(start, _count_between(spec, covered, first), newest)


def _count_between(spec: Cron, after: float, before: float) -> int:
    """How many slots lie in ``(after, before)``, counting at most ``MAX_CATCH_UP``."""
    if before - 1 <= after:
        return 0
    return len(spec.newest(before - 1, after, MAX_CATCH_UP))


def stamp(slot: float) -> str:
    """The slot as ISO 8601 UTC to the second: ``2026-03-02T08:00:00Z``."""
    return datetime.fromtimestamp(slot, UTC).strftime(_STAMP)


def slot_run_id(workflow: str, slot: float) -> str:
    """The id of the run that starts ``workflow`` at ``slot``: the same in every
    process, so a second start of the slot finds the first."""
    run_id = f"{RUN_ID_PREFIX}{workflow}:{stamp(slot)}"
    if len(run_id) <= _MAX_RUN_ID:
        return run_id
    return f"{RUN_ID_PREFIX}{_digest(workflow)}:{stamp(slot)}"


def slot_of(run_id: str, workflow: str) -> datetime | None:
    """The cron slot a run was started for, read from its id (None: not a slot's)."""
    if not run_id.startswith(RUN_ID_PREFIX):
        return None
    # The stamp holds colons itself: it is the last 20 characters.
    body = run_id[len(RUN_ID_PREFIX) :]
    middle, when = body[:-21], body[-20:]
    if body[-21:-20] != ":" or middle not in (workflow, _digest(workflow)):
        return None
    try:
        return datetime.strptime(when, _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def _digest(workflow: str) -> str:
    return "h" + hashlib.sha256(workflow.encode()).hexdigest()[:24]


def describe_slot(slot: datetime, spec: Cron | None = None) -> str:
    """A slot as people read it: UTC, and the schedule's own zone when it has one."""
    text = slot.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if spec is not None and spec.tz != "UTC":
        local = slot.astimezone(spec.zone)
        text += f" ({local.strftime('%Y-%m-%d %H:%M:%S')} {spec.tz})"
    return text


def split_schedule(on: object, workflow: str) -> tuple[Cron | None, object]:
    """``on=`` of a workflow split into its cron schedule (one at most) and the event
    triggers beside it, which ``compile_triggers`` reads as before."""
    items = list(on) if isinstance(on, list | tuple) else [on]
    crons = [item for item in items if isinstance(item, Cron)]
    if not crons:
        return None, on
    if len(crons) > 1:
        raise ConfigError(
            f"workflow {workflow!r}: on= takes one tarry.cron(...), got {len(crons)} "
            f"({', '.join(map(str, crons))}); register the other schedule on a workflow "
            "of its own"
        )
    rest = [item for item in items if not isinstance(item, Cron)]
    return crons[0], rest or None


_LATEST = datetime(9999, 12, 31, tzinfo=UTC).timestamp()
"""The latest start a delay may ask for: a date can still be written for it."""


def start_time(delay: Duration | None, start_at: datetime | None, now: float) -> float | None:
    """When a run started with ``delay=`` or ``start_at=`` may begin (None: now). A
    naive ``start_at``, a malformed or negative ``delay``, or both given: ``ValueError``
    naming the value, before anything is stored."""
    if delay is not None and start_at is not None:
        raise ValueError(
            f"pass delay or start_at, not both (got delay={delay!r}, start_at={start_at!r})"
        )
    if delay is not None:
        try:
            when = now + parse_duration(delay)
        except ValueError as exc:
            raise ValueError(f"delay: {exc}") from None
        if when > _LATEST:
            raise ValueError(f"delay: {delay!r} is past the year 9999; give a shorter one")
        return when
    if start_at is None:
        return None
    if not isinstance(start_at, datetime):
        raise ValueError(f"start_at must be an aware datetime, got {start_at!r}")
    return check_aware(start_at, "start_at").timestamp()
