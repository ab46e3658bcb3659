"""Which runs each event started and resumed, read back from the runs themselves.

A run started by an event keeps it as its trigger; a wait that took an event keeps
it as its step's output (alone, as the ``value`` of a ``wait_for_any``, or among
the arrivals of a ``wait_for_all``). The store hands over the candidates of a time
window; here they are matched to the events by id.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..models import Event
from ..store.base import Store
from .wait_view import event_id_of


@dataclass(slots=True)
class Links:
    started: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)


async def links_of(store: Store, events: Sequence[Event]) -> dict[str, Links]:
    """For each of ``events``: the runs it started and the runs whose wait it ended."""
    found: dict[str, Links] = {e.id: Links() for e in events}
    if not events:
        return found
    stamps = [e.ts.timestamp() for e in events]
    # The window is a little wider than the events: stored times are floats.
    candidates = await store.event_links(min(stamps) - 1e-3, max(stamps) + 1e-3)
    for run_id, trigger in candidates.started:
        event_id = event_id_of(_json(trigger))
        if event_id in found and run_id not in found[event_id].started:
            found[event_id].started.append(run_id)
    for run_id, _, output in candidates.resumed:
        for event_id in _event_ids(_json(output)):
            if event_id in found and run_id not in found[event_id].resumed:
                found[event_id].resumed.append(run_id)
    return found


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _event_ids(output: Any) -> Iterator[str]:
    """Event ids in a wait step's output: an event, ``{index, value}``, or a list of them."""
    for item in output if isinstance(output, list) else [output]:
        for value in (item, item.get("value") if isinstance(item, dict) else None):
            event_id = event_id_of(value)
            if event_id is not None:
                yield event_id
