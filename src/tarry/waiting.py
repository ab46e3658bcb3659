"""How a parked run's wait reads, for ``tarry run``, ``tarry runs`` and the dashboard.

A run parked on branches started side by side waits on each branch's wait; a step
parked on several conditions (``wait_for_all``, ``wait_for_any``, a k-of-n quorum)
lists them, and those that have arrived so far in the order they came.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import WaitingFor


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition of a wait on several: ``kind`` and ``name`` split its text
    ("signal" and "contract:RUN"); ``arrived`` whether it has fired."""

    index: int
    text: str
    kind: str
    name: str
    arrived: bool


def conditions(wait: WaitingFor) -> list[Condition]:
    """The wait's conditions: those that arrived first, in arrival order, then those
    still pending in the order the code gave them."""
    count = len(wait.conditions)
    order: list[int] = []
    for index in wait.arrived:
        if 0 <= index < count and index not in order:
            order.append(index)
    order += [index for index in range(count) if index not in order]
    shown = []
    for index in order:
        text = wait.conditions[index]
        kind, _, name = text.partition(" ")
        shown.append(Condition(index, text, kind, name, index in wait.arrived))
    return shown


def tally(wait: WaitingFor) -> str:
    """``1 of 2 arrived`` for a wait on several conditions, else ""."""
    if not wait.conditions:
        return ""
    arrived = sum(1 for c in conditions(wait) if c.arrived)
    needs = wait.needs
    quorum = f" (needs {needs})" if needs is not None and needs < len(wait.conditions) else ""
    return f"{arrived} of {len(wait.conditions)} arrived{quorum}"


def summary(wait: WaitingFor) -> str:
    """Short: ``signal``, ``all 1 of 2 arrived``, ``2 waits: signal, any 1 of 3 arrived``."""
    if wait.kind == "branches":
        n = len(wait.waits)
        parts = ", ".join(summary(each) for each in wait.waits)
        return f"{n} wait{'' if n == 1 else 's'}: {parts}" if parts else f"{n} waits"
    if wait.conditions:
        return f"{wait.kind} {tally(wait)}"
    return wait.kind


def on_several(wait: WaitingFor) -> bool:
    """Whether the wait, or one of its branches, is on several conditions (whose
    arrivals are stored with its step, not with the run)."""
    return bool(wait.conditions) or any(on_several(each) for each in wait.waits)
