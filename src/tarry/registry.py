"""The workflows an App knows, with their decorator options, checked at registration."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .conditions import CancelOn, EventCondition, Trigger, compile_cancel_on, compile_triggers
from .durations import Duration, parse_duration
from .errors import ConfigError
from .flow import Concurrency, Debounce, Rate, flow_rules
from .names import check_name
from .schedules import Cron, split_schedule
from .store.base import WorkflowConfig
from .store.flow_records import NO_FLOW, FlowRules

Handler = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Workflow:
    id: str
    fn: Handler
    is_async: bool
    retries: int
    triggers: tuple[Trigger, ...] = ()
    cancel_on: tuple[EventCondition, ...] = ()
    concurrency: int | None = None
    retain: float | None = None
    """Seconds ended runs are kept (None: the App's ``retention``)."""
    source_hash: str = ""
    """A short hash of the handler's source: its code version unless the App names one."""
    flow: FlowRules = NO_FLOW
    """Keyed limits, rate, debounce and default priority (``tarry.flow``)."""
    schedule: Cron | None = None
    """The cron schedule in ``on=`` (``tarry.cron``): a worker starts a run per slot."""

    def config(self) -> WorkflowConfig:
        """What the store keeps so that an event from any process starts or cancels runs."""
        return WorkflowConfig(
            self.id,
            tuple((t.event, t.if_) for t in self.triggers),
            tuple(c.filing() for c in self.cancel_on),
            None if self.flow.plain else self.flow,
        )


class Registry(Mapping[str, Workflow]):
    """Workflows by id, in registration order; read like a dict."""

    version: str | None = None
    """The code version the App names (``App(version=)`` or ``$TARRY_VERSION``), which
    every workflow reports instead of its source hash."""

    def version_of(self, workflow: str) -> str | None:
        """The code version runs of ``workflow`` run under here (None: not registered)."""
        found = self._workflows.get(workflow)
        if found is None:
            return None
        return self.version or found.source_hash

    def __init__(self) -> None:
        self._workflows: dict[str, Workflow] = {}
        self.generation = 0
        """Counts registrations: what the store was told is current while unchanged."""

    def __getitem__(self, id: str) -> Workflow:
        return self._workflows[id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._workflows)

    def __len__(self) -> int:
        return len(self._workflows)

    def __contains__(self, id: object) -> bool:
        return id in self._workflows  # on every start: no detour through __getitem__

    def __repr__(self) -> str:
        return f"Registry({list(self._workflows)})"

    def workflow(
        self,
        id: str,
        *,
        on: str | Trigger | Cron | Sequence[str | Trigger | Cron] | None = None,
        retries: int = 4,
        cancel_on: CancelOn | Sequence[CancelOn] | None = None,
        concurrency: Concurrency = None,
        retain: Duration | None = None,
        rate_limit: Rate | None = None,
        debounce: Debounce | None = None,
        priority: int = 0,
    ) -> Callable[[Handler], Handler]:
        """The decorator behind ``App.workflow``: options are checked (and CEL
        compiled) now, the function when it is decorated."""
        try:
            check_name(id, "workflow id")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if id in self._workflows:
            raise ConfigError(f"workflow {id!r} is already registered")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ConfigError(f"retries must be a non-negative integer, got {retries!r}")
        cap, flow = flow_rules(id, concurrency, rate_limit, debounce, priority)
        keep = None
        if retain is not None:
            try:
                keep = parse_duration(retain)
            except ValueError as exc:
                raise ConfigError(f"retain: {exc}") from None
        schedule, events = split_schedule(on, id)
        triggers = tuple(compile_triggers(events, id))
        cancels = tuple(compile_cancel_on(cancel_on, id))

        def register(fn: Handler) -> Handler:
            if id in self._workflows:
                raise ConfigError(f"workflow {id!r} is already registered")
            if not callable(fn):
                raise ConfigError(f"workflow {id!r} must decorate a function, got {fn!r}")
            is_async = inspect.iscoroutinefunction(fn)
            self.generation += 1
            self._workflows[id] = Workflow(
                id, fn, is_async, retries, triggers, cancels, cap, keep, _source_hash(fn),
                flow=flow, schedule=schedule,
            )  # fmt: skip
            return fn

        return register

    def configs(self) -> list[WorkflowConfig]:
        return [w.config() for w in self._workflows.values()]

    def caps(self) -> dict[str, int]:
        """The ``concurrency`` cap of each workflow that has one."""
        return {w.id: w.concurrency for w in self._workflows.values() if w.concurrency}

    def flows(self) -> dict[str, FlowRules]:
        """The flow rules of each workflow whose claim checks more than a lease."""
        return {w.id: w.flow for w in self._workflows.values() if w.flow.gated}

    def schedules(self) -> dict[str, Cron]:
        """The cron schedule of each workflow that has one."""
        return {w.id: w.schedule for w in self._workflows.values() if w.schedule is not None}

    def retention(self, default: float | None) -> dict[str, float]:
        """Seconds each workflow's ended runs are kept, for those that are not kept
        for ever: its ``retain``, else ``default``."""
        kept = {
            w.id: w.retain if w.retain is not None else default for w in self._workflows.values()
        }
        return {name: seconds for name, seconds in kept.items() if seconds is not None}


def _source_hash(fn: Handler) -> str:
    """12 hex digits of the handler's source (its bytecode when the source is gone)."""
    try:
        text = inspect.getsource(fn).encode()
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        text = code.co_code if code is not None else repr(fn).encode()
    return hashlib.sha256(text).hexdigest()[:12]
