"""What a person can answer of a parked run, the form each answer gets, and how an
answer is sent: always through the App (``send_signal``, ``send_message``,
``complete_token``), which checks it against the wait's schema again.

A wait a person can answer is a signal, a message or a callback token, alone or
as one condition of a wait on several. Its form follows its schema: Approve and
Reject for the approval shape (``tarry.Approval``), the schema's fields for any
other schema, a JSON box for a wait without one. Of a wait on any of several
conditions, one is offered (a typed one first): answering it answers the wait.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from .. import waiting
from ..app import App
from ..errors import PayloadInvalid
from ..models import Run, WaitingFor
from ..store.dashboard_records import RunDetail
from ..wait_schema import is_approval
from .pages import BadInput
from .schema_form import Field, FormInvalid, Problems, fields_for, form_answer, placed
from .strictjson import loads_strict

ANSWERED_BY = "dashboard"
"""Who a decision names when the form gives no name."""
KINDS = frozenset({"signal", "message", "token"})
"""The conditions a person can answer from a form."""


@dataclass(frozen=True)
class Answerable:
    """One condition a person can answer: ``key`` is the signal key, the message name
    (None: any name) or the token id; ``index`` its place in its step (None: the
    step's only condition)."""

    run_id: str
    step: str
    index: int | None
    kind: str
    key: str | None
    name: str
    """What people read: the signal key, the message or token name."""
    schema: dict[str, Any] | None
    expires_at: datetime | None = None

    @cached_property
    def approval(self) -> bool:
        return is_approval(self.schema)

    @cached_property
    def fields(self) -> list[Field]:
        """The schema's form ([] for the approval shape and for no schema)."""
        return fields_for(self.schema)

    @property
    def form_id(self) -> str:
        """An id for this answer's form, unique on a page that lists many runs."""
        digest = hashlib.sha256(f"{self.run_id}\0{self.step}\0{self.index}".encode())
        return f"answer-{digest.hexdigest()[:12]}"

    @property
    def cond(self) -> str:
        return "" if self.index is None else str(self.index)


@dataclass(frozen=True, slots=True)
class AnswerState:
    """A form sent back with its problems: which one (``form_id``), what it held and
    what is wrong, beside each field and as a whole."""

    form_id: str
    kept: dict[str, str] = field(default_factory=dict)
    problems: Problems = field(default_factory=Problems)


def run_answerables(run: Run, detail: RunDetail | None) -> list[Answerable]:
    """What a person can answer of ``run`` now: each of its waits on a signal, a
    message or a token (one per wait on any of several, each pending one of a wait on
    all of them)."""
    top = run.waiting_for
    if run.status != "waiting" or top is None:
        return []
    waits = top.waits if top.kind == "branches" else [top]
    keys = {(c.step, c.index): c.key for c in (detail.pending if detail else [])}
    found: list[Answerable] = []
    for wait in waits:
        found += _of_wait(run.id, wait, keys)
    return found


def _of_wait(
    run_id: str, wait: WaitingFor, keys: Mapping[tuple[str, int | None], str | None]
) -> list[Answerable]:
    if not wait.conditions:
        key = keys.get((wait.step, None)) if wait.kind == "token" else wait.key
        if wait.kind not in KINDS or (wait.kind != "message" and not key):
            return []
        return [
            Answerable(
                run_id,
                wait.step,
                None,
                wait.kind,
                key,
                wait.key or "",
                wait.schema,
                wait.expires_at,
            )
        ]
    found = []
    for c in waiting.conditions(wait):
        if c.arrived or c.kind not in KINDS or (wait.step, c.index) not in keys:
            continue  # arrived, or not a person's to answer
        schema = wait.schemas[c.index] if c.index < len(wait.schemas) else None
        key = keys[wait.step, c.index] if c.kind == "token" else (c.name or None)
        found.append(
            Answerable(run_id, wait.step, c.index, c.kind, key, c.name, schema, wait.expires_at)
        )
    return one_of_any(wait.kind, found)


def one_of_any(step_kind: str | None, found: list[Answerable]) -> list[Answerable]:
    """A wait on any of several conditions is answered by one: offer the first typed
    one (else the first); a wait on all of them needs each."""
    if step_kind != "any" or len(found) < 2:
        return found
    typed = [a for a in found if a.schema is not None]
    return [(typed or found)[0]]


def chosen(found: list[Answerable], step: str, cond: str) -> Answerable | None:
    """The answerable a form names (its ``step`` and ``cond``); a form naming no step
    (from before forms named one) answers the run's first."""
    if not step:
        return found[0] if found else None
    for each in found:
        if each.step == step and each.cond == cond:
            return each
    return None


def answer_of(target: Answerable, form: Mapping[str, str]) -> Any:
    """The data a posted form answers ``target`` with. ``FormInvalid`` when the
    schema's form does not make data that fits; ``BadInput`` for anything else."""
    choice = form.get("decision", "").strip()
    if choice in ("approve", "reject"):
        if target.schema is not None and not target.approval:
            raise BadInput(
                "this wait expects its own form, not Approve or Reject: nothing was sent"
            )
        decision: dict[str, Any] = {
            "approved": choice == "approve",
            "by": form.get("by", "").strip() or ANSWERED_BY,
        }
        comment = form.get("comment", "").strip()
        if comment:
            decision["comment"] = comment
        return decision
    if choice == "form" and target.fields:
        return form_answer(target.schema or {}, target.fields, form)
    if choice == "custom":
        return _json_box(form.get("data", ""))
    raise BadInput(f"unknown decision {choice!r}: choose Approve, Reject or Send")


def _json_box(raw: str) -> Any:
    try:
        data = loads_strict(raw) if raw.strip() else None
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise BadInput(f"data is not valid JSON: {exc}") from None
    if data is None:
        raise BadInput("the custom payload must be a JSON value other than null")
    return data


async def send_answer(app: App, target: Answerable, data: Any, message_name: str = "") -> str:
    """Send ``data`` to the wait ``target``; the notice code for what happened.
    ``PayloadInvalid`` (from the App) becomes ``FormInvalid`` beside the fields."""
    try:
        if target.kind == "signal" and target.key:
            # strict: a stale page must not buffer a decision for some later run.
            await app.send_signal(target.key, data, strict=True)
            return "delivered"
        if target.kind == "message":
            name = message_name or target.key or "decision"
            await app.send_message(target.run_id, name, data)
            return "message"
        if target.kind == "token" and target.key:
            await app.complete_token(target.key, data)
            return "answered"
    except PayloadInvalid as exc:
        raise FormInvalid(placed(list(exc.errors), target.fields)) from None
    raise BadInput(f"this run waits on {target.kind}; send it from the API")


def posted(form: Any) -> dict[str, str]:
    """A form's text fields (the last value of each name)."""
    return {k: v for k, v in form.multi_items() if isinstance(v, str)}
