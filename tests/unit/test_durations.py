from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tarry.durations import deadline, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("24h", 86400), ("3d", 259200),
     ("1w", 604800), ("1h30m", 5400), ("1.5s", 1.5), (2, 2.0), (0.25, 0.25),
     (timedelta(minutes=2), 120.0)],
)  # fmt: skip
def test_valid_durations(text, seconds) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5", "5M", "1 h", "h", "-5s", "1h-", -1, True, None, [1]])
def test_invalid_durations_name_the_value(bad) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


def test_deadline_forms() -> None:
    assert deadline(None, now=100.0) is None
    assert deadline("10s", now=100.0) == 110.0
    when = datetime(2030, 1, 1, tzinfo=UTC)
    assert deadline(when, now=100.0) == when.timestamp()  # absolute: now plays no part
    with pytest.raises(ValueError, match="naive"):
        deadline(datetime(2030, 1, 1), now=100.0)
