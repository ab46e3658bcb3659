"""What the dashboard reads from a store beyond the client's reads: a runs search,
the runs an event started or resumed, and a parked run's waits in full."""

from __future__ import annotations

from dataclasses import dataclass, field

from .records import RunRow


@dataclass(frozen=True, slots=True)
class RunSearch:
    """Runs by ``status``, id and workflow prefix, code version and creation time
    (epoch seconds; ``since`` inclusive, ``until`` exclusive). None matches any."""

    status: str | None = None
    id_prefix: str | None = None
    workflow_prefix: str | None = None
    version: str | None = None
    since: float | None = None
    until: float | None = None

    def params(self) -> dict[str, object]:
        return {
            "status": self.status,
            "id_prefix": self.id_prefix or None,
            "id_len": len(self.id_prefix or ""),
            "workflow_prefix": self.workflow_prefix or None,
            "workflow_len": len(self.workflow_prefix or ""),
            "version": self.version,
            "since": self.since,
            "until": self.until,
        }


@dataclass(frozen=True, slots=True)
class SearchResult:
    """A page of runs newest first, and how many runs of each status match the search
    without its status (the counts a status filter chooses from)."""

    runs: list[RunRow]
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventLinks:
    """Candidates for what some events did: the runs started with a trigger
    (``(run_id, trigger JSON)``) and the wait steps that may hold an event
    (``(run_id, step_key, output JSON)``); the caller matches event ids."""

    started: list[tuple[str, bytes]] = field(default_factory=list)
    resumed: list[tuple[str, str, bytes]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WaitCondition:
    """One pending condition of a parked run as filed: a signal key, an event name
    with the equality it is filed under (``path`` = ``value``, JSON) and its CEL
    ``expr``, a message name, a child run. ``index`` within its step (None: the
    step's only condition)."""

    step: str
    index: int | None
    kind: str
    key: str | None
    path: str | None
    value: str | None
    expr: str | None


@dataclass(frozen=True, slots=True)
class RunDetail:
    """What a run's page shows beyond the run: its trigger event (JSON, None for a run
    started by ``start``), the run that invoked it and the runs it invoked, what each
    of its waiting steps waits on as the code said it (``specs``: step key to text)
    and the conditions still pending."""

    trigger: bytes | None
    parent: str | None = None
    children: list[str] = field(default_factory=list)
    specs: dict[str, str] = field(default_factory=dict)
    pending: list[WaitCondition] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PersonWait:
    """One typed condition a parked run waits on (the approvals inbox): its run and
    workflow, its step and the step's kind (``any`` when one of several conditions
    answers it), its index in the step (None: the step's only condition), its kind
    (signal, message or token), its key (the signal key, the message name or None for
    any name, the token id), its JSON Schema, its deadline and when the wait began."""

    run_id: str
    workflow: str
    step: str
    step_kind: str | None
    index: int | None
    kind: str
    key: str | None
    name: str
    """What people read: the signal key, the message name ("" for any), the token's."""
    schema: bytes
    expires_at: float | None
    since: float | None


@dataclass(frozen=True, slots=True)
class Inbox:
    """The typed waits of runs not ended, soonest deadline first (at most the limit
    asked for), and how many waiting steps there are in all."""

    waits: list[PersonWait]
    total: int
