"""What a parked run waits on, in full: each wait's step and the code's own words
for it (``event 'app/x' match 'data.user'``), and each condition with its match
and ``if`` as filed, whether it has arrived and, if so, what came.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import waiting
from ..models import Run, WaitingFor
from ..store.dashboard_records import RunDetail, WaitCondition


@dataclass(frozen=True, slots=True)
class ConditionView:
    text: str
    kind: str
    name: str
    arrived: bool
    match: str | None = None
    """``path = value`` an event must carry (None: any)."""
    if_: str | None = None
    """The CEL condition evaluated on a candidate event."""
    came: Any = None
    """What arrived for it (an event's JSON holds its id)."""


@dataclass(frozen=True, slots=True)
class WaitView:
    wait: WaitingFor
    spec: str | None
    conditions: list[ConditionView] = field(default_factory=list)
    tally: str = ""
    single: ConditionView | None = None
    """A wait on one condition: its match and ``if``, shown inline."""


def wait_views(run: Run, waits: RunDetail | None) -> list[WaitView]:
    """One view per wait of a parked run (one, or each branch's)."""
    if run.waiting_for is None:
        return []
    found = waits or RunDetail(None)
    each = run.waiting_for.waits if run.waiting_for.kind == "branches" else [run.waiting_for]
    outputs = {s.id: s.output for s in run.steps}
    return [_view(w, found, outputs.get(w.step)) for w in each]


def _view(wait: WaitingFor, waits: RunDetail, output: Any) -> WaitView:
    pending = [c for c in waits.pending if c.step == wait.step]
    came = {}
    if isinstance(output, list):  # a wait for several arrivals keeps them with its step
        came = {e.get("index"): e.get("value") for e in output if isinstance(e, dict)}
    shown = []
    for c in waiting.conditions(wait):
        filed = next((p for p in pending if p.index == c.index), None)
        shown.append(_condition(c.text, c.arrived, filed, came.get(c.index)))
    single = None
    if not wait.conditions and pending:
        single = _condition(f"{wait.kind} {wait.key or ''}", False, pending[0], None)
    return WaitView(wait, waits.specs.get(wait.step), shown, waiting.tally(wait), single)


def _condition(text: str, arrived: bool, filed: WaitCondition | None, came: Any) -> ConditionView:
    kind, _, name = text.partition(" ")
    match = if_ = None
    if filed is not None and filed.kind == "event":
        if filed.path and filed.value is not None:
            match = f"{filed.path} = {filed.value}"
        if_ = filed.expr
    return ConditionView(text, kind, name, arrived, match, if_, came)


def event_id_of(value: Any) -> str | None:
    """The id of an event as a step stores it (``{name, data, id, ts}``), else None."""
    if isinstance(value, dict) and {"name", "data", "id", "ts"} <= value.keys():
        found = value["id"]
        return found if isinstance(found, str) else None
    return None
