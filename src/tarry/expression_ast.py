"""What a compiled CEL expression says, read from its checked AST: the equalities
the store can index, and the paths of ``async`` it reads.

Matching must not scan every waiter, so the top-level ``&&`` equalities of
``async.<path>`` to a literal or to ``event.<path>`` are pulled out for the store
to index. They are only a hint: the full expression is still evaluated on each
candidate, so extraction stays conservative and returns nothing it is unsure
about. The paths it reads let an evaluation hand CEL only those parts of a large
event. Apart from ``expressions`` (compiling and evaluating), because this reads
the library's serialized program byte by byte, with no protobuf runtime.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Equality", "extract_equalities", "reads_of"]


@dataclass(frozen=True, slots=True)
class Equality:
    """One indexable condition: ``async.<path>`` equals ``value`` or ``event.<event_path>``.

    When ``event_path`` is None the condition is against the literal ``value``
    (a str, int, float, bool, or None for CEL ``null``).
    """

    path: str
    value: Any | None = None
    event_path: str | None = None


# Equality extraction. ``Expression.serialize()`` returns a google.protobuf.Any
# holding a cel.expr.CheckedExpr (cel-spec's checked.proto / syntax.proto). Only
# the few fields read here are decoded, straight from the protobuf wire format,
# so no protobuf runtime is needed. Field numbers from cel-spec:
#   Any: type_url=1, value=2;  CheckedExpr: expr=4;  ParsedExpr: expr=2
#   Expr: const_expr=3, ident_expr=4, select_expr=5, call_expr=6
#   Ident: name=1;  Select: operand=1, field=2, test_only=3
#   Call: target=1, function=2, args=3 (repeated)
#   Constant: null_value=1, bool_value=2, int64_value=3, uint64_value=4,
#             double_value=5, string_value=6 (others are not indexed)

_Fields = dict[int, list[Any]]


def _fields(buf: bytes) -> _Fields:
    out: _Fields = {}
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        value: Any
        if wire_type == 0:
            value, pos = _varint(buf, pos)
        elif wire_type == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire_type == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire_type == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if pos > end:
            raise ValueError("truncated message")
        out.setdefault(number, []).append(value)
    return out


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _one(fields: _Fields, number: int) -> Any:
    values = fields.get(number)
    return values[-1] if values else None


def _root(serialized: bytes) -> _Fields | None:
    wrapper = _fields(serialized)
    type_url = bytes(_one(wrapper, 1) or b"")
    message = _fields(bytes(_one(wrapper, 2) or b""))
    if type_url.endswith(b"/cel.expr.CheckedExpr"):
        root = _one(message, 4)
    elif type_url.endswith(b"/cel.expr.ParsedExpr"):
        root = _one(message, 2)
    else:
        return None
    return None if root is None else _fields(root)


def extract_equalities(serialized: bytes) -> Iterator[Equality]:
    """The top-level ``&&`` equalities of the serialized program, in their order."""
    root = _root(serialized)
    if root is None:
        return
    for conjunct in _conjuncts(root):
        equality = _equality(conjunct)
        if equality is not None:
            yield equality


def _call(expr: _Fields) -> tuple[str, list[_Fields]] | None:
    """A global function call's name and arguments; None for anything else."""
    call = _one(expr, 6)
    if call is None:
        return None
    fields = _fields(call)
    if _one(fields, 1) is not None:  # a member call such as x.startsWith(y)
        return None
    name = bytes(_one(fields, 2) or b"").decode()
    return name, [_fields(arg) for arg in fields.get(3, [])]


def _conjuncts(expr: _Fields) -> Iterator[_Fields]:
    call = _call(expr)
    if call is not None and call[0] == "_&&_":
        for arg in call[1]:
            yield from _conjuncts(arg)
    else:
        yield expr


def _equality(expr: _Fields) -> Equality | None:
    call = _call(expr)
    if call is None or call[0] != "_==_" or len(call[1]) != 2:
        return None
    for this, other in (call[1], call[1][::-1]):
        reference = _reference(this)
        if reference is None or reference[0] != "async":
            continue
        other_reference = _reference(other)
        if other_reference is not None:
            if other_reference[0] == "event":
                return Equality(path=reference[1], value=None, event_path=other_reference[1])
            continue
        found, value = _literal(other)
        if found:
            return Equality(path=reference[1], value=value, event_path=None)
    return None


def _reference(expr: _Fields) -> tuple[str, str] | None:
    """``async.a.b`` → ``("async", "a.b")``: a variable and a non-empty field path."""
    chain = _chain(expr)
    if chain.tested or chain.unspellable or not chain.path:
        return None  # a has() test, or a key a path cannot spell
    if chain.variable not in ("async", "event"):
        return None
    return chain.variable, chain.path


@dataclass(frozen=True, slots=True)
class _Chain:
    """A chain of field selections from a variable: ``async.a.b``."""

    variable: str | None
    """None when the chain does not start at one."""
    path: str
    """The fields, dotted (empty for the variable alone)."""
    tested: bool
    """One of them is a ``has()`` test."""
    unspellable: bool
    """One of them is a key a dotted path cannot spell (empty, or with a dot)."""


def _chain(expr: _Fields) -> _Chain:
    """The chain of selections ``expr`` is, read down to its variable; the walk stops at
    a selection without an operand (then there is no variable)."""
    parts: list[str] = []
    tested = unspellable = False
    while (select := _one(expr, 5)) is not None:
        fields = _fields(select)
        part = bytes(_one(fields, 2) or b"").decode()
        tested = tested or bool(_one(fields, 3))
        unspellable = unspellable or not part or "." in part
        parts.append(part)
        operand = _one(fields, 1)
        if operand is None:
            return _Chain(None, "", tested, unspellable)
        expr = _fields(operand)
    ident = _one(expr, 4)
    name = None if ident is None else bytes(_one(_fields(ident), 1) or b"").decode()
    return _Chain(name, ".".join(reversed(parts)), tested, unspellable)


def _literal(expr: _Fields) -> tuple[bool, Any]:
    constant = _one(expr, 3)
    if constant is None:
        return False, None
    fields = _fields(constant)
    if 1 in fields:
        return True, None
    if 2 in fields:
        return True, bool(_one(fields, 2))
    if 3 in fields:
        raw = _one(fields, 3)
        return True, raw - (1 << 64) if raw >= 1 << 63 else raw
    if 4 in fields:
        return True, _one(fields, 4)
    if 5 in fields:
        return True, struct.unpack("<d", _one(fields, 5))[0]
    if 6 in fields:
        return True, bytes(_one(fields, 6)).decode()
    return False, None


# What an expression reads of ``async``. Every read of a CEL variable is a chain of
# field selections on it; the chain's path is all the expression can see below it.
#   CreateList: elements=1;  CreateStruct: entries=2 (Entry: map_key=3, value=4)
#   Comprehension: iter_range=2, accu_init=4, loop_condition=5, loop_step=6, result=7


class _ReadsAnything(Exception):
    """The expression uses ``async`` whole, or in a form not understood here."""


def _async_reads(expr: _Fields | None) -> Iterator[str]:
    if expr is None:
        return
    if (select := _one(expr, 5)) is not None:
        path = _select_path(expr)
        if path is not None:
            if path[0] == "async":
                yield path[1]
            return
        yield from _async_reads(_sub(_fields(select), 1))
    elif (ident := _one(expr, 4)) is not None:
        if bytes(_one(_fields(ident), 1) or b"").decode() == "async":
            raise _ReadsAnything
    elif (call := _one(expr, 6)) is not None:
        fields = _fields(call)
        yield from _async_reads(_sub(fields, 1))
        for arg in fields.get(3, []):
            yield from _async_reads(_fields(arg))
    elif (items := _one(expr, 7)) is not None:
        for element in _fields(items).get(1, []):
            yield from _async_reads(_fields(element))
    elif (struct_ := _one(expr, 8)) is not None:
        for entry in _fields(struct_).get(2, []):
            entry_fields = _fields(entry)
            yield from _async_reads(_sub(entry_fields, 3))
            yield from _async_reads(_sub(entry_fields, 4))
    elif (loop := _one(expr, 9)) is not None:
        fields = _fields(loop)
        for number in (2, 4, 5, 6, 7):
            yield from _async_reads(_sub(fields, number))
    elif _one(expr, 3) is None:
        raise _ReadsAnything  # a kind of expression this walk does not know


def _outermost(paths: set[str]) -> tuple[str, ...]:
    """The paths not below another one (``data`` covers ``data.x``)."""
    return tuple(
        sorted(p for p in paths if not any(p.startswith(q + ".") for q in paths if q != p))
    )


def _sub(fields: _Fields, number: int) -> _Fields | None:
    value = _one(fields, number)
    return None if value is None else _fields(value)


def _select_path(expr: _Fields) -> tuple[str, str] | None:
    """``async.a.b`` (also under ``has()``) → ``("async", "a.b")``; None when the chain
    does not start at a variable."""
    chain = _chain(expr)
    if chain.unspellable:
        raise _ReadsAnything  # a key a dotted path cannot spell
    return None if chain.variable is None else (chain.variable, chain.path)


def reads_of(serialized: bytes) -> tuple[str, ...] | None:
    """The outermost paths of ``async`` the expression reads; None when it may read
    anything (it uses ``async`` whole, or in a form not understood here)."""
    try:
        return _outermost(set(_async_reads(_root(serialized))))
    except _ReadsAnything:
        return None
