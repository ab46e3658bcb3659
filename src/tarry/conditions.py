"""Declarative conditions: what starts a run, what cancels it, what a wait matches.

Each is compiled once, where it is declared, so a bad CEL expression fails at
decoration time for ``on=`` and ``cancel_on=``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from . import serde
from .durations import parse_duration
from .errors import ConfigError, ExpressionError
from .expression_ast import Equality
from .expressions import (
    Expression,
    compile_expression,
    indexable_equalities,
    match_to_equality,
)
from .ids import new_id
from .models import Message, Token, Woken, event_from_json, message_from_json
from .names import check_name
from .store.base import (
    EventWait,
    Filing,
    MessageWait,
    NewEvent,
    SignalWait,
    StepRow,
    WaitCondition,
)
from .store.matching import canonical, resolve_filing
from .store.token_records import TokenWait
from .wait_schema import WaitSchema, wait_schema


def _event_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{what} needs a non-empty event name, got {name!r}")
    try:
        return check_name(name, f"{what} event name")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class EventCondition:
    """An event name plus an optional ``match`` path or CEL ``if_``, compiled.

    ``expression`` is what is evaluated on a candidate event; ``equality`` is the
    one condition the store files the waiter under (None: no indexable equality).
    """

    name: str
    match: str | None
    if_: str | None
    expression: Expression | None
    equality: Equality | None

    @classmethod
    def build(cls, name: str, match: str | None, if_: str | None, what: str) -> EventCondition:
        name = _event_name(name, what)
        if match is not None and if_ is not None:
            raise ConfigError(f"{what} on {name!r}: pass match or if_, not both")
        if match is not None:
            equality = match_to_equality(match)
            expression = compile_expression(f"async.{match} == event.{match}")
            return cls(name, match, None, expression, equality)
        if if_ is not None:
            expression = compile_expression(if_)
            found = indexable_equalities(expression)
            return cls(name, None, if_, expression, found[0] if found else None)
        return cls(name, None, None, None, None)

    def filing(self) -> Filing:
        """The store's form, before an equality against the trigger is resolved."""
        expr = self.expression.source if self.expression is not None else None
        equality = self.equality
        if equality is None:
            return Filing(self.name, expr)
        if equality.event_path is not None:
            return Filing(self.name, expr, equality.path, None, equality.event_path)
        return Filing(self.name, expr, equality.path, canonical(equality.value))


@dataclass(frozen=True, slots=True)
class Trigger:
    """``on=tarry.trigger("app/x", if_="event.data.plan == 'pro'")``: start a run per
    matching event. In a trigger's ``if_``, ``event`` is the incoming event."""

    event: str
    if_: str | None = None

    def compiled(self) -> EventCondition:
        if self.if_ is not None:
            # A trigger has no earlier event: its own event is both ``event`` and ``async``.
            compile_expression(self.if_)
        return EventCondition(_event_name(self.event, "trigger"), None, self.if_, None, None)


@dataclass(frozen=True, slots=True)
class CancelOn:
    """``cancel_on=[tarry.cancel_on("app/order.cancelled", match="data.orderId")]``."""

    event: str
    match: str | None = None
    if_: str | None = None


def trigger(event: str, *, if_: str | None = None) -> Trigger:
    cond = Trigger(event, if_)
    cond.compiled()
    return cond


def cancel_on(event: str, *, match: str | None = None, if_: str | None = None) -> CancelOn:
    EventCondition.build(event, match, if_, "cancel_on")
    return CancelOn(event, match, if_)


def compile_triggers(on: object, workflow: str) -> list[Trigger]:
    """Normalise ``on=`` (a name, a Trigger, or a list of them) and compile it."""
    if on is None:
        return []
    items = on if isinstance(on, list | tuple) else [on]
    triggers: list[Trigger] = []
    for item in items:
        if isinstance(item, str):
            item = Trigger(item)
        if not isinstance(item, Trigger):
            raise ConfigError(
                f"workflow {workflow!r}: on= takes event names or tarry.trigger(...), got {item!r}"
            )
        try:
            item.compiled()
        except ExpressionError as exc:
            raise ExpressionError(f"workflow {workflow!r} on={item.event!r}: {exc}") from None
        triggers.append(item)
    return triggers


def compile_cancel_on(cancel: object, workflow: str) -> list[EventCondition]:
    if cancel is None:
        return []
    items = cancel if isinstance(cancel, list | tuple) else [cancel]
    compiled = []
    for item in items:
        if not isinstance(item, CancelOn):
            raise ConfigError(
                f"workflow {workflow!r}: cancel_on= takes tarry.cancel_on(...) items, got {item!r}"
            )
        compiled.append(EventCondition.build(item.event, item.match, item.if_, "cancel_on"))
    return compiled


def new_event(
    name: str, data: Any, event_id: str | None, *, limit: int, now: float, trace: str | None = None
) -> NewEvent:
    """Validate and encode an event to send; ``event_id`` from the sender dedupes;
    ``trace``: the sender's trace context."""
    check_name(name, "event name")
    if event_id is not None:
        check_name(event_id, "event id")
    payload = serde.dumps({} if data is None else data, what=f"data of event {name!r}", limit=limit)
    return NewEvent(event_id or new_id(now), name, payload, event_id is not None, trace)


# -- the conditions of a wait_for_any ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignalCondition:
    """``tarry.signal(key)``: a signal on ``key`` (whose data fits ``schema``, if any)."""

    key: str
    on_conflict: str = "fail"
    schema: WaitSchema | None = None


@dataclass(frozen=True, slots=True)
class EventWaitCondition:
    """``tarry.event(name, match=, if_=)``: a matching event."""

    condition: EventCondition
    lookback: Any = "run"


@dataclass(frozen=True, slots=True)
class MessageCondition:
    """``tarry.message(name=None)``: a message in the run's mailbox (any name if None)
    whose data fits ``schema``, if any."""

    name: str | None = None
    schema: WaitSchema | None = None


@dataclass(frozen=True, slots=True)
class TokenCondition:
    """``tarry.token(token)``: the completion of a callback token of this run."""

    token: Token

    @property
    def schema(self) -> WaitSchema | None:
        """The token's ``schema=``: what its completions were checked against."""
        schema: WaitSchema | None = self.token.schema
        return schema


AnyCondition = SignalCondition | EventWaitCondition | MessageCondition | TokenCondition


def signal(key: str, *, on_conflict: str = "fail", schema: object = None) -> SignalCondition:
    """A signal on ``key``; with ``schema`` (a pydantic model or a JSON Schema dict),
    only data that fits it, returned as the model's instance for a model."""
    check_name(key, "signal key")
    if on_conflict not in ("fail", "replace"):
        raise ValueError(f'on_conflict must be "fail" or "replace", got {on_conflict!r}')
    return SignalCondition(key, on_conflict, wait_schema(schema, what=f"signal {key!r} schema="))


def event(
    name: str, *, match: str | None = None, if_: str | None = None, lookback: Any = "run"
) -> EventWaitCondition:
    return EventWaitCondition(EventCondition.build(name, match, if_, "tarry.event"), lookback)


def message(name: str | None = None, *, schema: object = None) -> MessageCondition:
    """A message in the run's mailbox (of ``name``, if given); with ``schema``, only
    one whose data fits it (its ``data`` the model's instance for a model)."""
    if name is not None:
        check_name(name, "message name")
    what = "message schema=" if name is None else f"message {name!r} schema="
    return MessageCondition(name, wait_schema(schema, what=what))


def token(token: Token) -> TokenCondition:
    """The completion of ``token`` (from ``step.create_token`` in this run); its value
    is the data, as the token's schema model when it was created with one."""
    if not isinstance(token, Token):
        raise TypeError(
            f"tarry.token takes the Token that step.create_token returned, got {token!r}"
        )
    return TokenCondition(token)


# -- a wait's conditions as the store keeps them ------------------------------------------


def to_wait(
    spec: AnyCondition,
    trigger: dict[str, Any],
    run_created_at: float,
    now: float,
    memo: Mapping[str, StepRow],
) -> WaitCondition:
    """The store's form of one condition of a wait begun at ``now`` by a run created at
    ``run_created_at`` with ``trigger``, whose step records so far are ``memo``."""
    if isinstance(spec, SignalCondition):
        on_conflict: Literal["fail", "replace"] = (
            "replace" if spec.on_conflict == "replace" else "fail"
        )
        return SignalWait(spec.key, on_conflict, _encoded(spec.schema))
    if isinstance(spec, EventWaitCondition):
        filing = resolve_filing(spec.condition.filing(), trigger)
        if spec.lookback is None:
            since = None
        elif spec.lookback == "run":
            since = run_created_at
        else:
            since = now - parse_duration(spec.lookback)
        return EventWait(filing, since, _seen_events(trigger, memo))
    if isinstance(spec, MessageCondition):
        return MessageWait(spec.name, _encoded(spec.schema))
    if isinstance(spec, TokenCondition):
        return TokenWait(spec.token.id, spec.token.name, _encoded(spec.schema))
    raise TypeError(
        "wait conditions are built with tarry.signal(...), tarry.event(...) or "
        f"tarry.message(...), got {spec!r}"
    )


def _encoded(schema: WaitSchema | None) -> bytes | None:
    return None if schema is None else schema.encoded


def typed_value(spec: AnyCondition, value: Any) -> Any:
    """A fired condition's value as the code reads it: a typed signal's data as its
    model (or as it is, for a dict schema), a typed message with such ``data``."""
    schema = getattr(spec, "schema", None)
    if schema is None or value is None:
        return value
    if isinstance(value, Message):
        return replace(value, data=schema.parse(value.data))
    return schema.parse(value)


def _seen_events(trigger: dict[str, Any], memo: Mapping[str, StepRow]) -> tuple[str, ...]:
    """Event ids a run must not match again: its trigger, and every event an earlier
    wait of the run already returned."""
    seen = [trigger["id"]] if "id" in trigger else []
    for row in memo.values():
        if row.status != "completed" or not row.output:
            continue
        if row.kind == "event":
            seen.append(serde.loads(row.output)["id"])
        elif row.kind == "any":
            value = serde.loads(row.output)["value"]
            if isinstance(value, dict) and "ts" in value and "id" in value:
                seen.append(value["id"])
    return tuple(seen)


def shown(cond: WaitCondition) -> str:
    """One condition of a parked wait, as people read it."""
    if isinstance(cond, SignalWait):
        return f"signal {cond.key}"
    if isinstance(cond, EventWait):
        return f"event {cond.filing.event}"
    if isinstance(cond, MessageWait):
        return "message" if cond.name is None else f"message {cond.name}"
    if isinstance(cond, TokenWait):
        return f"token {cond.name}"
    return f"run {cond.child.id}"


def waiting_key(conds: tuple[WaitCondition, ...]) -> str | None:
    """The key, event name, message name or child run shown for a one-condition wait."""
    if len(conds) != 1:
        return None
    cond = conds[0]
    if isinstance(cond, SignalWait):
        return cond.key
    if isinstance(cond, EventWait):
        return cond.filing.event
    if isinstance(cond, MessageWait | TokenWait):
        return cond.name
    return cond.child.id


def describe(spec: AnyCondition) -> str:
    """What one condition waits on, as a replay compares it: its kind and the keys,
    names and expressions the code gave it (never its deadline or lookback)."""
    if isinstance(spec, SignalCondition):
        return f"signal {spec.key!r}"
    if isinstance(spec, EventWaitCondition):
        cond = spec.condition
        if cond.match is not None:
            return f"event {cond.name!r} match {cond.match!r}"
        if cond.if_ is not None:
            return f"event {cond.name!r} if {cond.if_!r}"
        return f"event {cond.name!r}"
    if isinstance(spec, TokenCondition):
        return f"token {spec.token.name!r}"
    return "message" if spec.name is None else f"message {spec.name!r}"


def check_conditions(conditions: Sequence[AnyCondition], what: str) -> None:
    if not conditions:
        raise ValueError(f"{what} needs at least one condition")
    for cond in conditions:
        if not isinstance(cond, AnyCondition):
            raise TypeError(
                f"{what} takes tarry.signal(...), tarry.event(...), tarry.message(...) or "
                f"tarry.token(...) conditions, got {cond!r}"
            )


def woken(conditions: Sequence[AnyCondition], found: dict[str, Any]) -> Woken:
    """Which condition of a wait on several fired (``found``: ``{index, value}``), with
    its value as the public type (an Event, a Message)."""
    index, value = found["index"], found["value"]
    chosen = conditions[index]
    if isinstance(chosen, EventWaitCondition):
        value = event_from_json(value)
    elif isinstance(chosen, MessageCondition):
        value = message_from_json(value)
    return Woken(index, typed_value(chosen, value))
