"""What the store keeps for callback tokens: the token, its completion's outcome, the
secrets that sign its links, and the condition of a wait on one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ..models import WaiterKind


@dataclass(frozen=True, slots=True)
class TokenWait:
    """Woken by the completion of the token ``token_id`` (its data); a token completed
    before the wait answers it at once. ``name`` is what people read."""

    token_id: str
    name: str
    schema: bytes | None = None
    """The token's JSON Schema, filed with the waiter for those who show the wait
    (completions are checked against the token's own)."""
    kind: ClassVar[WaiterKind] = "token"


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token to store with the step that creates it: ``schema`` is the JSON Schema
    a completion must fit (None: any JSON)."""

    id: str
    name: str
    expires_at: float | None
    schema: bytes | None = None


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A stored token with what its run is now (``run_status``, whether a cancel of it
    is pending)."""

    id: str
    run_id: str
    step_key: str
    name: str
    schema: bytes | None
    created_at: float
    expires_at: float | None
    completed_at: float | None
    data: bytes | None
    workflow: str
    run_status: str
    cancel_requested: bool


TokenStatus = Literal["completed", "not_found", "used", "expired", "ended"]


@dataclass(frozen=True, slots=True)
class TokenOutcome:
    """A completion: ``completed`` (stored, and delivered to the wait on it if one is
    parked, in the same transaction), or why nothing was stored. ``run_id`` is the
    token's run (None: no such token); ``at`` when it was completed (for ``used``:
    by the completion that stands)."""

    status: TokenStatus
    run_id: str | None = None
    at: float | None = None


@dataclass(frozen=True, slots=True)
class TokenSecret:
    """A key that signs token links: the current one (``valid_until`` None), or one
    rotated out, still accepted until ``valid_until``."""

    value: str
    created_at: float
    valid_until: float | None
