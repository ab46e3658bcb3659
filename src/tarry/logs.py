"""How ``tarry worker|serve|dev`` write their logs: text or JSON lines, at a level.

The engine logs through the standard ``logging`` module (the logger ``tarry`` and
its children; lifecycle records on ``tarry.runs``, see ``observe.py``), so an
application that configures logging itself gets every record with its fields as
attributes. ``configure`` is what the CLI does with ``--log-level`` and
``--log-format``: one handler on the ``tarry`` logger, writing to stderr.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "tarry_fields",
}
"""The attributes every LogRecord has: the rest were given as ``extra``."""


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What the record was given as ``extra`` (the lifecycle fields among them)."""
    fields = getattr(record, "tarry_fields", None)  # a lifecycle record says them at once
    if isinstance(fields, dict):
        return fields
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the extra fields,
    and the traceback when the record carries one."""

    _second = -1
    _stamp = ""

    def _ts(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # the date part, made once a second
            self._second = second
            self._stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._stamp}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self._ts(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(extra_fields(record))
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


class QuietPolling(logging.Filter):
    """Drops the access-log lines of the dashboard's own refreshes (its fragments:
    a run page's live part every 2 s, a runs list's table and counts), so a
    dashboard left open does not fill the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        path = args[2] if isinstance(args, tuple) and len(args) >= 3 else ""
        return not (isinstance(path, str) and "fragment=" in path)


def configure(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send the ``tarry`` logger's records at ``level`` and above to ``stream``
    (stderr), as ``fmt`` (text or json). Raises ``ValueError`` naming a bad value."""
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; expected one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logger = logging.getLogger("tarry")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
