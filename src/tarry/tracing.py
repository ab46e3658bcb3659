"""OpenTelemetry traces across the pause.

tarry uses only ``opentelemetry-api`` (the ``tarry[otel]`` extra); the
application configures the SDK and its exporter. Until it has (no tracer
provider set, or the API not installed at all) every function here returns at
once, and without the API installed OpenTelemetry is never imported.

What is traced:

- ``App.start``, ``send_signal``, ``send_event``, ``send_message`` (and the
  step methods that send) make a PRODUCER span, and its context travels with
  what they send, stored in the same transaction as W3C ``traceparent`` text:
  on the run a start creates, on the wait step a delivery completes.
- Each attempt at a run (claim to park, retry or end) is a span: a child of the
  context the run was started under, so a run stays in its caller's trace,
  however many days and workers it spans.
- Each execution of a step function is a span under its attempt, current while
  the function runs, so the application's own spans nest under it.
- Each wait, from park to wake, is a span made when the run resumes past it
  (its start is when it parked), LINKED to the span of the code that woke it:
  the trace of "a person clicked Approve" leads to the steps that ran because
  of it, days later, in another process.

A run whose trace the sampler dropped gets no step or wait spans at all (under
the SDK's default ``ParentBased`` sampler they would be dropped too), so sampling
is what makes tracing cheap on a busy worker: see bench/RESULTS.md.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span, SpanContext, Tracer

    from .store.base import RunRow, StepRow

_NOT_LOADED: Any = object()
_api: Any = _NOT_LOADED
"""The ``opentelemetry.trace`` module once looked for; None when not installed."""
_context: Any = None
"""``opentelemetry.context``, loaded with ``_api``."""
_tracer: Tracer | None = None
_tracer_of: object = None
"""The provider ``_tracer`` came from: a provider set later gets a new tracer."""

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_NULL = contextlib.nullcontext(None)


def _trace_api() -> Any:
    global _api, _context
    if _api is _NOT_LOADED:
        try:
            from opentelemetry import context, trace
        except ImportError:
            _api = None
        else:
            _api, _context = trace, context
    return _api


def tracer() -> Tracer | None:
    """tarry's tracer when the application has configured a tracer provider, else
    None (no span is worth making: the API's own provider makes no-op spans)."""
    global _tracer, _tracer_of
    api = _trace_api()
    if api is None:
        return None
    # Asked twice per run: with no provider set, the API's getter reads the
    # environment each time (for a provider named there); the module's own record of
    # the provider set answers without it, and the environment is read once.
    if getattr(api, "_TRACER_PROVIDER", _NOT_LOADED) is None and not _provider_in_env():
        return None
    provider = api.get_tracer_provider()
    if isinstance(provider, (api.ProxyTracerProvider, api.NoOpTracerProvider)):
        return None
    if provider is not _tracer_of:
        from . import __version__

        _tracer = provider.get_tracer("tarry", __version__)
        _tracer_of = provider
    return _tracer


@functools.cache
def _provider_in_env() -> bool:
    return "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def traceparent(context: SpanContext) -> str | None:
    """``context`` as W3C ``traceparent`` text, None when it is not valid."""
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def parse(text: str | None) -> SpanContext | None:
    """A stored ``traceparent`` as a remote span context; None for none or junk."""
    api = _trace_api()
    if not text or api is None:
        return None
    found = _TRACEPARENT.fullmatch(text)
    if found is None:
        return None
    trace_id, span_id, flags = (int(part, 16) for part in found.groups())
    if trace_id == 0 or span_id == 0:
        return None
    found_context: SpanContext = api.SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=api.TraceFlags(flags)
    )
    return found_context


def sending(operation: str, **attributes: Any) -> contextlib.AbstractContextManager[str | None]:
    """A PRODUCER span around a send by application code (``start``,
    ``send_signal``, ...); yields its context to store with what is sent, or None
    when tracing is off (a shared no-op: a send makes no generator then)."""
    found = tracer()
    if found is None:
        return _NULL
    return _sending(found, operation, attributes)


@contextlib.contextmanager
def _sending(found: Tracer, operation: str, attributes: dict[str, Any]) -> Iterator[str | None]:
    shown = {f"tarry.{name}": value for name, value in attributes.items() if value is not None}
    span = found.start_span(f"tarry {operation}", kind=_api.SpanKind.PRODUCER, attributes=shown)
    with _current(span):
        yield traceparent(span.get_span_context())


@contextlib.contextmanager
def _current(span: Span) -> Iterator[None]:
    """``span`` is the current span inside, ended on the way out, with an exception
    that passes through recorded on it: ``start_as_current_span`` without its
    layers of wrappers, at half the cost."""
    token = _context.attach(_api.set_span_in_context(span))
    try:
        yield
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(_api.Status(_api.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        _context.detach(token)
        span.end()


def attempt_span(run: RunRow, *, resumed: bool) -> Span | None:
    """The span of an attempt at ``run``, started now: a child of the context the run
    was started under (when there was one), else the root of a trace of its own."""
    found = tracer()
    if found is None:
        return None
    parent = parse(run.trace)
    context = None
    if parent is not None and not parent.trace_flags.sampled:
        return None  # its trace was not sampled at its start: nothing of it would be kept
    if parent is not None:
        context = _api.set_span_in_context(_api.NonRecordingSpan(parent))
    attributes: dict[str, Any] = {"tarry.run_id": run.id, "tarry.workflow": run.workflow,
                  "tarry.resumed": resumed}  # fmt: skip
    return found.start_span(
        f"run {run.workflow}", context=context, kind=_api.SpanKind.CONSUMER, attributes=attributes
    )


def sent_from(parent: Span | None) -> str | None:
    """What a step's send stores: the attempt's span as ``traceparent``."""
    if parent is None:
        return None
    return traceparent(parent.get_span_context())


def step_span(
    parent: Span | None, key: str, attempt: int
) -> contextlib.AbstractContextManager[Any]:
    """A span around one execution of a step's function, current while it runs, under
    the attempt's span ``parent``; a no-op when that is None. An exception raised
    through it is recorded on it."""
    if parent is None or _tracer is None or not parent.is_recording():
        return _NULL  # a run's trace not sampled: its steps' spans would not be either
    context = _api.set_span_in_context(parent)
    attributes: dict[str, Any] = {"tarry.step": key, "tarry.step.attempt": attempt}
    return _current(_tracer.start_span(f"step {key}", context=context, attributes=attributes))


def wait_passed(parent: Span | None, run: RunRow, row: StepRow, by: str) -> None:
    """The run went on past the wait ``row`` (resolved, ``by`` a signal, an event,
    ..., or its timeout): its span, from when it parked to when it was woken, linked
    (as is the attempt's) to the code that woke it."""
    if parent is None or _tracer is None or not parent.is_recording():
        return
    woke = parse(row.trace)
    links = [] if woke is None else [_api.Link(woke)]
    attributes: dict[str, Any] = {"tarry.run_id": run.id, "tarry.workflow": run.workflow,
                                  "tarry.step": row.key, "tarry.wait.kind": str(row.kind),
                                  "tarry.wait.woken_by": by}  # fmt: skip
    if row.spec:
        attributes["tarry.wait.condition"] = row.spec
    start = _nanos(row.started_at)
    span = _tracer.start_span(
        f"wait {row.kind}",
        context=_api.set_span_in_context(parent),
        attributes=attributes,
        links=links,
        start_time=start,
    )
    span.end(end_time=_nanos(row.ended_at) if row.ended_at is not None else None)
    if woke is not None:
        parent.add_link(woke, {"tarry.step": row.key, "tarry.wait.woken_by": by})
    parent.set_attribute("tarry.resumed_by", by)


def end_attempt(span: Span | None, outcome: str, error: str | None = None) -> None:
    """End an attempt's span: ``outcome`` is parked, retrying, completed, failed,
    cancelled or stopped (its lease lost)."""
    if span is None:
        return
    span.set_attribute("tarry.outcome", outcome)
    if error is not None:
        span.set_status(_api.Status(_api.StatusCode.ERROR, error))
    span.end()


def _nanos(at: float | None) -> int | None:
    return None if at is None else int(at * 1e9)
