"""CEL conditions for event waits: compile once, evaluate on candidates, index equalities.

CEL is Google's C++ implementation through ``cel-expr-python`` (bench/cel_choice.md
says why). Two dynamically typed variables are declared: ``event``, the run's
trigger, and ``async``, the incoming event. Compiling type-checks the
expression, so a misspelt name such as ``evnt.data.id`` fails at compile time
with its position, not silently at every evaluation.

Matching must not scan every waiter, so the top-level ``&&`` equalities of
``async.<path>`` to a literal or to ``event.<path>`` are pulled out of the
compiled AST for the store to index. They are only a hint: the full expression
is still evaluated on each candidate, so extraction stays conservative and
returns nothing it is unsure about.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cel_expr_python import cel as _cel  # type: ignore[import-untyped, unused-ignore]

from tarry.errors import ExpressionError

__all__ = [
    "Equality",
    "Expression",
    "compile_expression",
    "indexable_equalities",
    "match_to_equality",
    "resolve_path",
]

_ENV: Any = _cel.NewEnv(variables={"async": _cel.Type.DYN, "event": _cel.Type.DYN})
_ERROR_TYPE: Any = _cel.Type.ERROR
# cel-expr-python only converts plain dict/list/str/number/bool/None/bytes for a
# dynamically typed variable; anything else comes back as an error with this text.
_UNCONVERTIBLE = "Non-CEL value type"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMPILE_ERROR = re.compile(r"ERROR: [^:\n]*:(\d+):(\d+): ([^\n]*)")
_CACHE_SIZE = 4096
_LONGEST_PATH = 256


@dataclass(frozen=True, slots=True)
class Equality:
    """One indexable condition: ``async.<path>`` equals ``value`` or ``event.<event_path>``.

    When ``event_path`` is None the condition is against the literal ``value``
    (a str, int, float, bool, or None for CEL ``null``).
    """

    path: str
    value: Any | None = None
    event_path: str | None = None


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled CEL condition. Build it with ``compile_expression``."""

    source: str
    _program: Any = field(repr=False, compare=False)
    _equalities: tuple[Equality, ...] = field(repr=False, compare=False)
    _reads: tuple[str, ...] | None = field(default=None, repr=False, compare=False)
    """The paths of ``async`` the expression reads (None: it may read anything)."""

    def evaluate(self, event: Mapping[str, Any] | None, incoming: Mapping[str, Any]) -> bool:
        """True only if the expression yields the bool ``true``.

        ``event`` is the trigger, ``incoming`` the event being matched; both are
        shaped like ``{"name", "data", "id", "ts"}``. A missing key, a type
        error or a non-bool result counts as no match; this never raises.
        """
        if self._reads is not None:
            # Only what the expression reads is handed to CEL, which converts all it
            # is given: a large event costs what the expression looks at.
            incoming = _pruned(incoming, self._reads)
        try:
            result = self._program.eval(
                data={"event": _activation_value(event), "async": _activation_value(incoming)}
            )
            value = result.value()
            if value is True or value is False:
                return value
            if isinstance(value, str) and _UNCONVERTIBLE in value and result.type() == _ERROR_TYPE:
                # Rare: a value CEL cannot take (tuple, nested datetime, ...). Convert and retry.
                plain = {"event": _plain(event), "async": _plain(incoming)}
                return self._program.eval(data=plain).value() is True
        except Exception:
            return False
        return False

    def value(self, event: Mapping[str, Any]) -> tuple[Any, str | None]:
        """The expression's value over the trigger ``event`` alone (a key, not a
        condition: any type), and why there is none when it failed (a missing field,
        a type error), instead of raising."""
        try:
            result = self._program.eval(data={"event": dict(event), "async": None})
            found = result.value()
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}"
        if str(result.type()) == "ERROR":
            return None, str(found)
        return found, None


def compile_expression(source: str) -> Expression:
    """Compile ``source``, or raise ``ExpressionError`` with the position and reason.

    Compiled expressions are cached by source, so each compiles once.
    """
    if not isinstance(source, str):
        raise ExpressionError(f"a CEL expression must be a str, not {type(source).__name__}")
    if not source.strip():
        raise ExpressionError("a CEL expression must not be empty")
    return _compile(source)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile(source: str) -> Expression:
    try:
        program = _ENV.compile(source)
    except Exception as exc:
        raise ExpressionError(_describe_compile_error(source, str(exc))) from None
    try:
        serialized = program.serialize()
        equalities = tuple(dict.fromkeys(_extract_equalities(serialized)))
    except Exception:
        return Expression(source, program, ())  # hints only: the full check stays right
    try:
        reads: tuple[str, ...] | None = _outermost(set(_async_reads(_root(serialized))))
    except _ReadsAnything:
        reads = None
    except Exception:
        reads = None
    return Expression(source, program, equalities, reads)


def _describe_compile_error(source: str, detail: str) -> str:
    problems = [
        f"line {line}, column {column}: {reason.strip()}"
        for line, column, reason in _COMPILE_ERROR.findall(detail)
    ]
    if not problems:
        return f"invalid CEL expression {source!r}: {detail.strip()}"
    # The library's snippet with a caret under the offending column, for the first error.
    snippet = [text for text in detail.splitlines() if text.startswith(" | ")][:2]
    snippet = [text.removesuffix(" [INVALID_ARGUMENT]") for text in snippet]
    return "\n".join([f"invalid CEL expression {source!r}: " + "; ".join(problems), *snippet])


def indexable_equalities(expr: Expression) -> list[Equality]:
    """The top-level ``&&`` equalities of ``async.<path>`` to a literal or ``event.<path>``."""
    return list(expr._equalities)


def match_to_equality(match: str) -> Equality:
    """``match="data.userId"``: the incoming event's path equals the trigger's same path."""
    if (
        not isinstance(match, str)
        or len(match) > _LONGEST_PATH
        or not all(_IDENTIFIER.fullmatch(part) for part in match.split("."))
    ):
        raise ExpressionError(
            f"match must be a dotted path of identifiers such as 'data.userId', at most "
            f"{_LONGEST_PATH} characters, not {match!r}"
        )
    return Equality(path=match, value=None, event_path=match)


def resolve_path(obj: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    """Look up a dotted path in nested mappings: ``(True, value)`` or ``(False, None)``."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return False, None
        current = current[part]
    return True, current


def _activation_value(obj: Mapping[str, Any] | None) -> Any:
    """The fast path: a plain dict goes in as is, but a top-level datetime (``ts``) is
    turned into an RFC 3339 string, because CEL cannot take a datetime as dyn."""
    if obj is None:
        return None
    if type(obj) is dict and not any(isinstance(value, date) for value in obj.values()):
        return obj
    return {key: _plain(value) if isinstance(value, date) else value for key, value in obj.items()}


def _plain(value: Any) -> Any:
    """Deep conversion to values CEL accepts: mappings to dicts, sequences to lists,
    dates and datetimes to ISO 8601 strings (``timestamp(async.ts)`` parses them)."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    return value


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


def _extract_equalities(serialized: bytes) -> Iterator[Equality]:
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
    parts: list[str] = []
    while (select := _one(expr, 5)) is not None:
        fields = _fields(select)
        part = bytes(_one(fields, 2) or b"").decode()
        if _one(fields, 3) or not part or "." in part:  # has() test, or a key a path cannot spell
            return None
        parts.append(part)
        operand = _one(fields, 1)
        if operand is None:
            return None
        expr = _fields(operand)
    ident = _one(expr, 4)
    if ident is None or not parts:
        return None
    name = bytes(_one(_fields(ident), 1) or b"").decode()
    if name not in ("async", "event"):
        return None
    return name, ".".join(reversed(parts))


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
    parts: list[str] = []
    while (select := _one(expr, 5)) is not None:
        fields = _fields(select)
        part = bytes(_one(fields, 2) or b"").decode()
        if not part or "." in part:
            raise _ReadsAnything  # a key a dotted path cannot spell
        parts.append(part)
        operand = _one(fields, 1)
        if operand is None:
            return None
        expr = _fields(operand)
    ident = _one(expr, 4)
    if ident is None:
        return None
    name = bytes(_one(_fields(ident), 1) or b"").decode()
    return name, ".".join(reversed(parts))


def _pruned(incoming: Mapping[str, Any], reads: tuple[str, ...]) -> dict[str, Any]:
    """``incoming`` with only what lies on ``reads``: each path's value where it is
    there (whole, if not an object), its absence where it is not."""
    out: dict[str, Any] = {}
    for path in reads:
        source: Any = incoming
        target = out
        parts = path.split(".")
        for i, part in enumerate(parts):
            if not isinstance(source, Mapping) or part not in source:
                break
            value = source[part]
            if i == len(parts) - 1 or not isinstance(value, Mapping):
                target[part] = value
                break
            existing = target.get(part)
            target = existing if isinstance(existing, dict) else target.setdefault(part, {})
            source = value
    return out
