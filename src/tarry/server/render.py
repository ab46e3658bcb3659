"""Jinja2 rendering for the dashboard: one autoescaping environment and its filters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse

from .. import waiting
from ..models import StepRecord
from .schema_form import fields_for

_env = Environment(
    loader=PackageLoader("tarry.server", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def span(seconds: float) -> str:
    """A short human duration: ``850 ms``, ``4.2 s``, ``3m 20s``, ``6d 23h``."""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"


def until(value: datetime | None) -> str:
    if value is None:
        return "no deadline"
    left = (value - datetime.now(UTC)).total_seconds()
    return f"in {span(left)}" if left >= 0 else f"{span(left)} ago"


def took(step: StepRecord) -> str:
    if step.started_at is None or step.ended_at is None:
        return ""
    return span((step.ended_at - step.started_at).total_seconds())


def segment(value: str) -> str:
    """``value`` as one URL path segment: "/", "?", "#" and ".." cannot escape it."""
    return quote(str(value), safe="")


def pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()


_env.filters.update(
    when=when,
    until=until,
    took=took,
    pretty=pretty,
    segment=segment,
    wait_summary=waiting.summary,
    conditions=waiting.conditions,
    schema_fields=fields_for,
)


def render(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code)
