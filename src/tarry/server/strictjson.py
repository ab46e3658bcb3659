"""JSON from clients (API bodies, dashboard fields, CLI options), parsed strictly.

Every JSON value a client gives tarry goes through :func:`loads_strict`, so the
same input gets the same answer from the API, the dashboard and the CLI, and a
value is either stored exactly as sent or refused with the reason.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


# What the store can hold (orjson): a signed 64-bit integer, or an unsigned one.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1


def _int64(text: str) -> int:
    if len(text) > 21:  # before int(), which refuses over 4,300 digits
        raise ValueError(
            f"the integer {text[:20]}... ({len(text):,} digits) is beyond the 64-bit range "
            f"tarry stores ({INT_MIN} to {INT_MAX})"
        )
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(
            f"the integer {text} is beyond the 64-bit range tarry stores ({INT_MIN} to {INT_MAX})"
        )
    return value


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is out of the range of a double")
    return value


def loads_strict(body: bytes | str) -> Any:
    """Parse RFC 8259 JSON, or raise ``json.JSONDecodeError`` saying why.

    Python's parser takes ``NaN`` and ``Infinity``, and turns ``1e999`` into ``inf``;
    all three would be stored as ``null``, so they are refused. An integer the store
    cannot hold (beyond 64 bits) is refused naming it, where orjson's parser would
    round it to a float. Nesting deeper than the parser's recursion allows is
    invalid JSON here, not a generic parse failure.
    """
    try:
        return json.loads(body, parse_constant=_no_constant, parse_float=_finite, parse_int=_int64)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        reason = "it nests arrays and objects too deeply"
    except UnicodeDecodeError as exc:
        reason = f"it is not UTF-8: {exc.reason}"
    except ValueError as exc:  # from the three parse_ hooks
        reason = str(exc)
    doc = body if isinstance(body, str) else body.decode("utf-8", "replace")
    raise json.JSONDecodeError(reason, doc, 0) from None
