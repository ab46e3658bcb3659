"""CEL conditions for event waits: compile once, evaluate on candidates, index equalities.

CEL is Google's C++ implementation through ``cel-expr-python`` (bench/cel_choice.md
says why). Two dynamically typed variables are declared: ``event``, the run's
trigger, and ``async``, the incoming event. Compiling type-checks the
expression, so a misspelt name such as ``evnt.data.id`` fails at compile time
with its position, not silently at every evaluation.

Matching must not scan every waiter: the equalities the store indexes, and the
paths of ``async`` an expression reads, are taken from the compiled program by
``expression_ast``; evaluation hands CEL only those paths of a large event.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cel_expr_python import cel as _cel  # type: ignore[import-untyped, unused-ignore]

from tarry.errors import ExpressionError
from tarry.expression_ast import Equality, extract_equalities, reads_of

__all__ = [
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
        equalities = tuple(dict.fromkeys(extract_equalities(serialized)))
    except Exception:
        return Expression(source, program, ())  # hints only: the full check stays right
    try:
        reads = reads_of(serialized)
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
