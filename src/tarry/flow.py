"""Flow control options of ``@app.workflow``: ``tarry.limit``, ``tarry.rate`` and
``tarry.debounce``, each checked when it is built (a bad number or duration is a
``ConfigError``, a key that does not compile an ``ExpressionError``), before anything
is stored.

A key is CEL over the run's trigger, ``event`` (for a run from ``App.start``, the
stand-in ``{"name": workflow, "data": payload}``), e.g. ``event.data.customerId``;
it is evaluated once, when the run is created.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .durations import Duration, parse_duration
from .errors import ConfigError, ExpressionError
from .expressions import compile_expression
from .store.flow_records import DebounceRule, FlowRules, KeyLimit, RateRule

__all__ = ["Debounce", "Limit", "Rate", "debounce", "flow_rules", "limit", "rate"]

_MAX_PRIORITY = 1_000_000


@dataclass(frozen=True, slots=True)
class Limit:
    """``tarry.limit(n, key=None)``: at most ``n`` runs executing at once, per value
    of ``key`` when given, else for the workflow."""

    limit: int
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Rate:
    """``tarry.rate(n, per=, key=None, burst=1)``: at most ``n`` first starts per
    ``per`` seconds, per value of ``key``."""

    limit: int
    per: float
    key: str | None = None
    burst: int = 1


@dataclass(frozen=True, slots=True)
class Debounce:
    """``tarry.debounce(period, key=None, max_wait=None)``."""

    period: float
    key: str | None = None
    max_wait: float | None = None


def _count(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def _seconds(value: object, what: str) -> float:
    try:
        seconds = parse_duration(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    if seconds <= 0:
        raise ConfigError(f"{what} must be longer than zero, got {value!r}")
    return seconds


def _key(key: object, what: str) -> str | None:
    if key is None:
        return None
    try:
        compile_expression(key)  # type: ignore[arg-type]
    except ExpressionError as exc:
        raise ExpressionError(f"the key of {what}: {exc}") from None
    assert isinstance(key, str)
    return key


def limit(limit: int, *, key: str | None = None) -> Limit:
    """At most ``limit`` runs of the workflow executing at once (parked runs do not
    count); with ``key``, a CEL expression over the trigger, that many per value."""
    n = _count(limit, "tarry.limit's limit")
    return Limit(n, _key(key, f"tarry.limit({n})"))


def rate(limit: int, per: Duration, *, key: str | None = None, burst: int = 1) -> Rate:
    """At most ``limit`` runs start executing per ``per`` (``"1m"``), spaced evenly,
    per value of ``key`` when given; ``burst`` of them may start at once. Resumes
    after a wait are not counted."""
    n = _count(limit, "tarry.rate's limit")
    seconds = _seconds(per, "tarry.rate's per")
    b = _count(burst, "tarry.rate's burst")
    if b > n:
        raise ConfigError(f"tarry.rate's burst ({b}) must not exceed its limit ({n})")
    return Rate(n, seconds, _key(key, f"tarry.rate({n}, per={per!r})"), b)


def debounce(
    period: Duration, *, key: str | None = None, max_wait: Duration | None = None
) -> Debounce:
    """Starts (and triggering events) within ``period`` of the last one, per value of
    ``key``, become one run with the last one's data, started once ``period`` passes
    without another; ``max_wait`` caps how long the first one can be pushed back."""
    seconds = _seconds(period, "tarry.debounce's period")
    most = None if max_wait is None else _seconds(max_wait, "tarry.debounce's max_wait")
    if most is not None and most < seconds:
        raise ConfigError(
            f"tarry.debounce's max_wait ({max_wait!r}) must not be shorter than its "
            f"period ({period!r})"
        )
    return Debounce(seconds, _key(key, f"tarry.debounce({period!r})"), most)


def check_priority(priority: object, what: str = "priority") -> int:
    """An int from -1,000,000 to 1,000,000; higher is claimed first."""
    if (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not -_MAX_PRIORITY <= priority <= _MAX_PRIORITY
    ):
        raise ConfigError(
            f"{what} must be an integer from {-_MAX_PRIORITY:,} to {_MAX_PRIORITY:,}, "
            f"got {priority!r}"
        )
    return priority


Concurrency = int | Limit | Sequence[int | Limit] | None


def flow_rules(
    workflow: str,
    concurrency: Concurrency,
    rate_limit: Rate | None,
    debounce: Debounce | None,
    priority: int,
) -> tuple[int | None, FlowRules]:
    """The decorator's options as the workflow's global cap (None: none) and the rules
    the store applies; ``ConfigError`` naming what is wrong."""
    items = [concurrency] if isinstance(concurrency, int | Limit) else list(concurrency or ())
    caps: list[int] = []
    keyed: list[KeyLimit] = []
    for item in items:
        if isinstance(item, Limit):
            if item.key is None:
                caps.append(item.limit)
            else:
                keyed.append(KeyLimit(item.limit, item.key))
        else:
            caps.append(_count(item, f"workflow {workflow!r}: concurrency"))
    if len({k.key for k in keyed}) < len(keyed):
        raise ConfigError(f"workflow {workflow!r}: two concurrency limits share one key")
    if rate_limit is not None and not isinstance(rate_limit, Rate):
        raise ConfigError(
            f"workflow {workflow!r}: rate_limit must be tarry.rate(...), got {rate_limit!r}"
        )
    if debounce is not None and not isinstance(debounce, Debounce):
        raise ConfigError(
            f"workflow {workflow!r}: debounce must be tarry.debounce(...), got {debounce!r}"
        )
    rules = FlowRules(
        limits=tuple(keyed),
        rate=None
        if rate_limit is None
        else RateRule(rate_limit.limit, rate_limit.per, rate_limit.key, rate_limit.burst),
        debounce=None
        if debounce is None
        else DebounceRule(debounce.period, debounce.key, debounce.max_wait),
        priority=check_priority(priority, f"workflow {workflow!r}: priority"),
    )
    return (min(caps) if caps else None), rules
