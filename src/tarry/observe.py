"""The engine's lifecycle, told as it happens: log records, and listeners.

Every moment an operator asks about (a run started, claimed, parked, resumed,
ended; a step completed, retrying, failed for good) is one ``emit`` here. It
becomes a log record on the logger ``tarry.runs`` whose ``extra`` attributes are
``event`` (the moment's kind), ``run_id``, ``workflow``, ``step`` and ``attempt``
(None where they do not apply) and the moment's own fields (``wait``,
``until``, ``by``, ``delay``, ``duration_ms``, ``error``), and it is handed to
every listener (metrics, traces) as a ``Moment``.

Nothing is built when no listener is registered and the logger would drop the
record: a worker at the default level (WARNING) pays one cached level check per
moment, and logs only what went wrong (a step failed for good, a run failed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

LOG = logging.getLogger("tarry.runs")

DEBUG, INFO, WARNING = logging.DEBUG, logging.INFO, logging.WARNING


class Moment(NamedTuple):
    """One moment of a run's life, as listeners get it (a tuple: made in C, several
    times a run)."""

    kind: str
    """started, claimed, step_completed, step_retrying, step_failed, parked,
    resumed, cancelled, completed or failed."""
    run_id: str
    workflow: str | None
    step: str | None = None
    attempt: int | None = None
    fields: Mapping[str, Any] = {}  # read only: never mutated
    error: BaseException | None = None


Listener = Callable[[Moment], None]
_listeners: tuple[Listener, ...] = ()
"""Replaced, never changed in place: a moment on another thread iterates the tuple it
read, with no copy made per moment."""


def add_listener(listener: Listener) -> None:
    """Hand every moment of every run in this process to ``listener`` (called on the
    thread that reached the moment; it must be quick and must not raise)."""
    global _listeners
    if listener not in _listeners:
        _listeners = (*_listeners, listener)


def remove_listener(listener: Listener) -> None:
    global _listeners
    _listeners = tuple(each for each in _listeners if each != listener)


def wanted(level: int) -> bool:
    """Whether a moment at ``level`` would reach anyone: test before building one."""
    return bool(_listeners) or LOG.isEnabledFor(level)


def emit(
    kind: str,
    level: int,
    message: str,
    run_id: str,
    workflow: str | None,
    *,
    args: tuple[Any, ...] = (),
    step: str | None = None,
    attempt: int | None = None,
    exc: BaseException | None = None,
    **fields: Any,
) -> None:
    """Tell one moment (see the module). ``message % args`` is the record's text,
    made only if a handler writes it (listeners never need it); ``exc`` an exception
    whose traceback the record carries."""
    listeners = _listeners
    if listeners:
        moment = Moment(kind, run_id, workflow, step, attempt, fields, exc)
        for listener in listeners:
            try:
                listener(moment)
            except Exception:  # a listener's fault must not stop a run
                LOG.exception("a lifecycle listener failed on %s of run %s", kind, run_id)
    if LOG.isEnabledFor(level):
        extra = {"event": kind, "run_id": run_id, "workflow": workflow, "step": step,
                 "attempt": attempt, **fields}  # fmt: skip
        exc_info = None if exc is None else (type(exc), exc, exc.__traceback__)
        # The record made here rather than by LOG.log: logging would walk the stack to
        # name the caller, a third of a record's cost, for a line every record shares.
        record = LOG.makeRecord(LOG.name, level, __file__, 0, message, args, exc_info,
                                kind, extra)  # fmt: skip
        record.tarry_fields = extra
        LOG.handle(record)


def run_name(run_id: str, workflow: str | None) -> str:
    """How a record names a run: ``run <id> (<workflow>)``."""
    return f"run {run_id}" if workflow is None else f"run {run_id} ({workflow})"


class _Run(Protocol):
    id: str
    workflow: str


def step_completed(run: _Run, key: str, attempt: int, took: float) -> None:
    emit("step_completed", DEBUG, "run %s (%s): step %r completed", run.id, run.workflow,
         args=(run.id, run.workflow, key), step=key, attempt=attempt,
         duration_ms=round(took * 1000, 3))  # fmt: skip


def step_retrying(run: _Run, key: str, attempt: int, exc: BaseException, delay: float) -> None:
    error = f"{type(exc).__name__}: {exc}"
    emit("step_retrying", INFO, "run %s (%s): step %r attempt %d failed (%s); retrying in %.3g s",
         run.id, run.workflow, args=(run.id, run.workflow, key, attempt, error, delay),
         step=key, attempt=attempt, delay=delay, error=error)  # fmt: skip


def step_failed(run: _Run, key: str, attempt: int, exc: BaseException) -> None:
    error = f"{type(exc).__name__}: {exc}"
    emit("step_failed", WARNING, "run %s (%s): step %r failed for good at attempt %d: %s",
         run.id, run.workflow, args=(run.id, run.workflow, key, attempt, error), step=key,
         attempt=attempt, exc=exc, error=error)  # fmt: skip
