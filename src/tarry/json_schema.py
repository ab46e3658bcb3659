"""JSON Schema, the part tarry checks: whether a schema is one it can check, and
where some data breaks it.

``validate`` is a pure function of (schema JSON, data) that the store calls inside
the transaction that delivers to a typed wait, so it imports nothing above the
store and never pydantic. It covers the part of JSON Schema (2020-12) that models
and hand-written schemas use: types, properties, required, additionalProperties,
enum, const, items and prefixItems, anyOf/oneOf/allOf/not, $defs and $ref, string
lengths and pattern, numeric bounds and multipleOf, item and property counts,
uniqueItems. ``schema_problems`` refuses a schema with any other assertion keyword
where it is declared, rather than accept it and then not check it.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson

from .errors import Violation

_TYPES = frozenset({"null", "boolean", "object", "array", "number", "integer", "string"})
_CHECKED = frozenset(
    {
        "type", "enum", "const", "properties", "required", "additionalProperties",
        "items", "prefixItems", "anyOf", "oneOf", "allOf", "not", "$ref", "$defs",
        "definitions", "minLength", "maxLength", "pattern", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
        "uniqueItems", "minProperties", "maxProperties",
    }
)  # fmt: skip
# Keywords that describe but never reject; pydantic emits several of them.
_ANNOTATIONS = frozenset(
    {
        "$schema", "$id", "$comment", "title", "description", "default", "examples",
        "format", "deprecated", "readOnly", "writeOnly", "discriminator",
        "contentMediaType", "contentEncoding",
    }
)  # fmt: skip
_MAX_ERRORS = 50
_MAX_REF_DEPTH = 64  # $refs followed without descending into the data: a cycle


def schema_problems(node: Any, root: dict[str, Any], at: str) -> Iterator[str]:
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        yield f"{at} is {type(node).__name__}, not a schema (a dict or true/false)"
        return
    for word, value in node.items():
        if word in _ANNOTATIONS or word.startswith("x-"):
            continue
        if word not in _CHECKED:
            yield f"{at} uses {word!r}, which tarry does not check (it checks {_listed()})"
            return
        yield from _keyword_problems(word, value, root, f"{at}/{word}")


def _keyword_problems(word: str, value: Any, root: dict[str, Any], at: str) -> Iterator[str]:
    if word == "type":
        names = value if isinstance(value, list) else [value]
        bad = [name for name in names if name not in _TYPES]
        if bad or not names:
            yield f"{at} names unknown types {bad!r} (JSON types are {sorted(_TYPES)})"
    elif word in ("properties", "$defs", "definitions"):
        if not isinstance(value, dict):
            yield f"{at} must be a dict of schemas"
            return
        for name, sub in value.items():
            yield from schema_problems(sub, root, f"{at}/{name}")
    elif word == "required":
        if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
            yield f"{at} must be a list of property names"
    elif word == "enum":
        if not isinstance(value, list):
            yield f"{at} must be a list"
    elif word in ("additionalProperties", "items", "not"):
        yield from schema_problems(value, root, at)
    elif word in ("prefixItems", "anyOf", "oneOf", "allOf"):
        if not isinstance(value, list) or not value:
            yield f"{at} must be a non-empty list of schemas"
            return
        for index, sub in enumerate(value):
            yield from schema_problems(sub, root, f"{at}/{index}")
    elif word == "$ref":
        if not isinstance(value, str) or resolve(root, value) is None:
            yield f"{at} {value!r} does not point into this schema (use #/$defs/Name)"
    elif word == "pattern":
        try:
            re.compile(value)
        except (re.error, TypeError) as exc:
            yield f"{at} {value!r} is not a regular expression: {exc}"
    elif word == "uniqueItems":
        if not isinstance(value, bool):
            yield f"{at} must be true or false"
    elif word != "const":  # the bounds and counts
        if isinstance(value, bool) or not isinstance(value, int | float):
            yield f"{at} must be a number, got {value!r}"
        elif word == "multipleOf" and value <= 0:
            yield f"{at} must be above 0"


def _listed() -> str:
    return ", ".join(sorted(_CHECKED))


def resolve(root: Any, ref: str) -> Any:
    """The schema a local ``$ref`` ("#", "#/$defs/Name", any JSON pointer) names."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


# -- checking data ---------------------------------------------------------------------


def validate(schema_json: bytes | str | Mapping[str, Any], data: Any) -> list[Violation]:
    """Where ``data`` (decoded JSON) breaks the schema: a list of ``Violation(path,
    message)`` with JSON paths such as ``$.items[0].name``; empty when it fits."""
    schema = decoded(schema_json) if isinstance(schema_json, bytes | str) else schema_json
    found: list[Violation] = []
    try:
        _check(schema, data, "$", schema, found, 0)
    except RecursionError:
        found.append(Violation("$", "is nested too deeply to check"))
    return found[:_MAX_ERRORS]


@functools.lru_cache(maxsize=256)
def decoded(schema_json: bytes | str) -> Any:
    # Many deliveries check against the same few schemas: decode each once.
    return orjson.loads(schema_json)


def _check(schema: Any, data: Any, path: str, root: Any, out: list[Violation], refs: int) -> None:
    if schema is True:
        return
    if schema is False:
        out.append(Violation(path, "is not allowed here"))
        return
    if not isinstance(schema, Mapping):
        return
    if "$ref" in schema:
        if refs >= _MAX_REF_DEPTH:
            out.append(Violation(path, "the schema refers to itself without end"))
            return
        _check(resolve(root, schema["$ref"]), data, path, root, out, refs + 1)
    if "type" in schema and not _type_fits(schema["type"], data):
        out.append(Violation(path, f"should be {_types_text(schema['type'])}, got {_kind(data)}"))
        return  # the other keywords would only repeat it
    if "const" in schema and not _json_equal(schema["const"], data):
        out.append(Violation(path, f"should be {_show(schema['const'])}"))
    if "enum" in schema and not any(_json_equal(item, data) for item in schema["enum"]):
        choices = ", ".join(_show(item) for item in schema["enum"])
        out.append(Violation(path, f"should be one of {choices}, got {_show(data)}"))
    _combined(schema, data, path, root, out, refs)
    if isinstance(data, dict):
        _check_object(schema, data, path, root, out)
    elif isinstance(data, list):
        _check_array(schema, data, path, root, out)
    elif isinstance(data, str):
        _check_string(schema, data, path, out)
    elif isinstance(data, int | float) and not isinstance(data, bool):
        _check_number(schema, data, path, out)


def _combined(
    schema: Mapping[str, Any], data: Any, path: str, root: Any, out: list[Violation], refs: int
) -> None:
    for sub in schema.get("allOf", ()):
        _check(sub, data, path, root, out, refs)
    if "anyOf" in schema:
        _one_or_any(schema["anyOf"], data, path, root, out, refs, exactly_one=False)
    if "oneOf" in schema:
        _one_or_any(schema["oneOf"], data, path, root, out, refs, exactly_one=True)
    if "not" in schema:
        trial: list[Violation] = []
        _check(schema["not"], data, path, root, trial, refs)
        if not trial:
            out.append(Violation(path, "matches a shape that is not allowed here"))


def _one_or_any(
    options: list[Any],
    data: Any,
    path: str,
    root: Any,
    out: list[Violation],
    refs: int,
    *,
    exactly_one: bool,
) -> None:
    failures: list[list[Violation]] = []
    for option in options:
        trial: list[Violation] = []
        _check(option, data, path, root, trial, refs)
        failures.append(trial)
    fits = sum(1 for trial in failures if not trial)
    if fits == 1 or (fits > 1 and not exactly_one):
        return
    if fits > 1:
        out.append(Violation(path, f"fits {fits} of the allowed shapes, it should fit one"))
        return
    # None fits. An Optional field is anyOf [shape, null]: report the shape's own
    # errors when only one option got past the type check, else one summary line.
    shapes = [resolve(root, o["$ref"]) if _is_ref(o) else o for o in options]
    typed = [o for o in shapes if isinstance(o, Mapping) and "type" in o]
    deeper = [
        trial
        for shape, trial in zip(shapes, failures, strict=True)
        if not (shape in typed and not _type_fits(shape["type"], data))
    ]
    if len(deeper) == 1:
        out.extend(deeper[0])
        return
    if not deeper and len(typed) == len(shapes):
        expected: list[str] = []
        for shape in typed:
            names = shape["type"] if isinstance(shape["type"], list) else [shape["type"]]
            expected += [name for name in names if name not in expected]
        out.append(Violation(path, f"should be {_types_text(expected)}, got {_kind(data)}"))
        return
    out.append(Violation(path, f"does not fit any of the {len(options)} allowed shapes"))


def _is_ref(option: Any) -> bool:
    return isinstance(option, Mapping) and isinstance(option.get("$ref"), str)


def _check_object(
    schema: Mapping[str, Any], data: dict[str, Any], path: str, root: Any, out: list[Violation]
) -> None:
    properties = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in data:
            out.append(Violation(child(path, name), "is required"))
    extra = schema.get("additionalProperties", True)
    for name, value in data.items():
        if name in properties:
            _check(properties[name], value, child(path, name), root, out, 0)
        elif extra is False:
            out.append(Violation(child(path, name), "is not an allowed property"))
        elif extra is not True:
            _check(extra, value, child(path, name), root, out, 0)
    _count(schema, len(data), "minProperties", "maxProperties", "properties", path, out)


def _check_array(
    schema: Mapping[str, Any], data: list[Any], path: str, root: Any, out: list[Violation]
) -> None:
    prefix = schema.get("prefixItems", ())
    for index, value in enumerate(data):
        item = prefix[index] if index < len(prefix) else schema.get("items", True)
        _check(item, value, f"{path}[{index}]", root, out, 0)
    _count(schema, len(data), "minItems", "maxItems", "items", path, out)
    if schema.get("uniqueItems") is True:
        seen: list[Any] = []
        for index, value in enumerate(data):
            if any(_json_equal(value, other) for other in seen):
                out.append(Violation(f"{path}[{index}]", "repeats an earlier item"))
            seen.append(value)


def _check_string(schema: Mapping[str, Any], data: str, path: str, out: list[Violation]) -> None:
    _count(schema, len(data), "minLength", "maxLength", "characters", path, out)
    pattern = schema.get("pattern")
    if pattern is not None and re.search(pattern, data) is None:
        out.append(Violation(path, f"should match the pattern {pattern!r}"))


_BOUNDS: tuple[tuple[str, Callable[[Any, Any], bool], str], ...] = (
    ("minimum", operator.ge, "at least"),
    ("maximum", operator.le, "at most"),
    ("exclusiveMinimum", operator.gt, "above"),
    ("exclusiveMaximum", operator.lt, "below"),
)


def _check_number(
    schema: Mapping[str, Any], data: int | float, path: str, out: list[Violation]
) -> None:
    for word, fits, text in _BOUNDS:
        if word in schema and not fits(data, schema[word]):
            out.append(Violation(path, f"should be {text} {schema[word]}, got {data}"))
    step = schema.get("multipleOf")
    if step is not None:
        ratio = data / step
        if not math.isfinite(ratio) or not math.isclose(ratio, round(ratio), abs_tol=1e-9):
            out.append(Violation(path, f"should be a multiple of {step}, got {data}"))


def _count(
    schema: Mapping[str, Any],
    size: int,
    low: str,
    high: str,
    unit: str,
    path: str,
    out: list[Violation],
) -> None:
    if low in schema and size < schema[low]:
        out.append(Violation(path, f"should have at least {schema[low]} {unit}, has {size}"))
    if high in schema and size > schema[high]:
        out.append(Violation(path, f"should have at most {schema[high]} {unit}, has {size}"))


def _type_fits(expected: str | list[str], data: Any) -> bool:
    names = expected if isinstance(expected, list) else [expected]
    return any(_is(name, data) for name in names)


def _is(name: str, data: Any) -> bool:
    if name == "null":
        return data is None
    if name == "boolean":
        return isinstance(data, bool)
    if name == "string":
        return isinstance(data, str)
    if name == "object":
        return isinstance(data, dict)
    if name == "array":
        return isinstance(data, list | tuple)
    if isinstance(data, bool) or not isinstance(data, int | float):
        return False
    return name == "number" or isinstance(data, int) or float(data).is_integer()


def _kind(data: Any) -> str:
    for name in ("null", "boolean", "string", "object", "array", "integer", "number"):
        if _is(name, data):
            return name
    return type(data).__name__


def _types_text(expected: str | list[str]) -> str:
    names = expected if isinstance(expected, list) else [expected]
    return " or ".join(_ARTICLES.get(n, "a ") + n for n in names)


_ARTICLES = {"object": "an ", "array": "an ", "integer": "an ", "null": ""}


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: true is not 1, and 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def _show(value: Any) -> str:
    text = orjson.dumps(value).decode() if _dumpable(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dumpable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def child(path: str, name: str) -> str:
    return f"{path}.{name}" if _NAME.match(name) else f"{path}[{orjson.dumps(name).decode()}]"
