"""The App's options as one frozen value, validated and parsed once.

Every layer below the App (worker, execution, steps) reads its limits and
timings from a ``Settings``; none of them sees the App itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from .durations import Duration, parse_duration
from .errors import ConfigError
from .tokens import check_public_url


@dataclass(frozen=True, slots=True)
class Settings:
    """Durations are seconds; sizes are bytes."""

    signal_retention: float = 24 * 3600.0
    """How long a signal nobody waits for stays buffered."""
    lease: float = 30.0
    """How long a worker holds a run between renewals."""
    retry_base: float = 1.0
    """The first retry's backoff ceiling; doubled per attempt up to ``retry_cap``."""
    retry_cap: float = 600.0
    max_output_bytes: int = 4 * 1024 * 1024
    """The largest JSON a step or a run may return."""
    max_steps: int = 10_000
    """Steps a run may take before it fails as a runaway loop."""
    max_history_bytes: int = 64 * 1024 * 1024
    """What a run's step records may hold (outputs and errors) before its next new
    step fails the run."""
    event_retention: float = 7 * 86400.0
    """How long events are kept (for lookbacks and listings)."""
    event_dedupe: float = 24 * 3600.0
    """How long an event ``id`` from a sender is remembered, to ignore repeats."""
    retention: float | None = None
    """How long ended runs are kept before workers delete them (None: for ever)."""
    sticky_for: float = 30.0
    """How long a parked async run's handler stays asleep in its worker, to resume
    without a replay if claimed there again (0: never); after that it holds nothing."""
    public_url: str | None = None
    """Where people and systems reach the server, the base of callback token links
    (None: not said; ``tarry serve`` sets what it listens on)."""

    @classmethod
    def parse(
        cls,
        *,
        signal_retention: Duration = "24h",
        lease: Duration = "30s",
        retry_base: Duration = "1s",
        retry_cap: Duration | None = None,
        max_output_bytes: int = 4 * 1024 * 1024,
        max_steps: int = 10_000,
        max_history_bytes: int = 64 * 1024 * 1024,
        event_retention: Duration = "7d",
        event_dedupe: Duration = "24h",
        retention: Duration | None = None,
        sticky_for: Duration = "30s",
        public_url: str | None = None,
    ) -> Settings:
        """The App's keyword options, checked; a bad one raises ``ConfigError`` (a
        ``ValueError``) naming the option and its value."""
        seconds = _duration("lease", lease)
        if seconds <= 0:
            raise ConfigError(f"lease must be positive, got {lease!r}")
        base = _duration("retry_base", retry_base)
        if retry_cap is None:  # 10 minutes, or the first backoff if that is longer
            cap = max(_DEFAULT_RETRY_CAP, base)
        else:
            cap = _duration("retry_cap", retry_cap)
            if cap < base:
                raise ConfigError(
                    f"retry_cap {retry_cap!r} is shorter than retry_base {retry_base!r}: "
                    "every backoff would be the cap; raise retry_cap or lower retry_base"
                )
        return cls(
            signal_retention=_duration("signal_retention", signal_retention),
            lease=seconds,
            retry_base=base,
            retry_cap=cap,
            max_output_bytes=_positive("max_output_bytes", max_output_bytes),
            max_steps=_positive("max_steps", max_steps),
            max_history_bytes=_positive("max_history_bytes", max_history_bytes),
            event_retention=_duration("event_retention", event_retention),
            event_dedupe=_duration("event_dedupe", event_dedupe),
            retention=None if retention is None else _positive_duration("retention", retention),
            sticky_for=_duration("sticky_for", sticky_for),
            public_url=None if public_url is None else _public_url(public_url),
        )


_DEFAULT_RETRY_CAP = 600.0


def _duration(option: str, value: Duration) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


def _positive_duration(option: str, value: Duration) -> float:
    seconds = _duration(option, value)
    if seconds <= 0:
        raise ConfigError(f"{option} must be positive, got {value!r}")
    return seconds


def _public_url(value: str) -> str:
    try:
        return check_public_url(value)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _positive(option: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{option} must be a positive integer, got {value!r}")
    return value
