"""A wait's JSON Schema as form fields, and a posted form back into JSON.

Each field's input is named by the JSON path of its value (``$.amount``,
``$.address.city``), the same paths ``wait_schema.validate`` reports violations
at, so an error lands beside the field it is about. What the form can render:
strings (a textarea when long or multi-line), numbers and integers, booleans (a
yes/no choice), enums (a choice), optional fields (``anyOf`` with null: left
empty, omitted or null), nested objects (a fieldset) and arrays of scalars (one
per line). Anything else is a JSON box for that field alone, never an error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import Violation
from ..wait_schema import is_approval, validate
from .strictjson import loads_strict

ROOT = "$"
LONG_TEXT = 200
"""Strings allowed more characters than this get a textarea."""
MULTI_LINE = frozenset({"textarea", "multi-line", "multiline"})
"""``format`` values that ask for a textarea."""
INPUT_TYPES = {"email": "email", "date": "date", "uri": "url"}
"""``format`` values a browser checks as it is typed."""
SCALARS = frozenset({"string", "number", "integer", "boolean"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True, slots=True)
class Choice:
    value: str
    """The value as JSON text: what the input posts."""
    label: str


@dataclass(frozen=True, slots=True)
class Field:
    """One input (or a fieldset, for ``widget`` "group"), named by its JSON ``path``.

    ``widget``: text, textarea, number, integer, boolean, choice, lines (an array of
    scalars, one per line, each a ``item``), json (a JSON box) or group."""

    path: str
    label: str
    widget: str
    required: bool = False
    nullable: bool = False
    hint: str = ""
    default: str = ""
    """The schema's default, as the input shows it."""
    choices: tuple[Choice, ...] = ()
    item: str = ""
    children: tuple[Field, ...] = ()
    attrs: dict[str, str] = field(default_factory=dict)
    """HTML attributes the browser checks with (min, max, step, maxlength, type)."""

    @property
    def optional(self) -> bool:
        return not self.required or self.nullable


@dataclass(frozen=True, slots=True)
class Problems:
    """What is wrong with a posted form: messages by field path, and those about the
    answer as a whole."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fields or self.general)


class FormInvalid(ValueError):
    """A posted form that does not make an answer the wait takes."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        count = sum(len(m) for m in problems.fields.values()) + len(problems.general)
        super().__init__(
            f"the answer was not sent: {count} problem{'' if count == 1 else 's'} "
            "to fix, shown beside the fields"
        )


# -- schema -> fields ------------------------------------------------------------------


def fields_for(schema: Mapping[str, Any] | None) -> list[Field]:
    """The form a wait's schema gets: none without a schema, and none for the approval
    shape, which gets Approve and Reject instead."""
    if schema is None or is_approval(schema):
        return []
    return form_fields(schema)


def form_fields(schema: Mapping[str, Any]) -> list[Field]:
    """The inputs for ``schema``: one per property of an object (nested objects as
    groups), or a single input at ``$`` for any other shape."""
    shape, _ = _shape(schema, schema)
    if shape.get("type") == "object" and isinstance(shape.get("properties"), Mapping):
        return list(_properties(shape, schema, ROOT))
    return [_field(schema, schema, ROOT, "Answer", required=True)]


def _properties(shape: Mapping[str, Any], root: Mapping[str, Any], path: str) -> list[Field]:
    required = set(shape.get("required", ()))
    return [
        _field(sub, root, child_path(path, name), name, required=name in required)
        for name, sub in shape["properties"].items()
    ]


def _field(node: Any, root: Mapping[str, Any], path: str, name: str, *, required: bool) -> Field:
    shape, nullable = _shape(node, root)
    outer = node if isinstance(node, Mapping) else {}
    label = str(outer.get("title") or shape.get("title") or name)
    hint = str(outer.get("description") or shape.get("description") or "")
    default = outer.get("default", shape.get("default"))

    def make(widget: str, default: str = "", **more: Any) -> Field:
        return Field(path, label, widget, required, nullable, hint, default, **more)

    choices = _choices(shape)
    if choices is not None:
        return make("choice", choices=choices, default=_json_text(default))
    kind = shape.get("type")
    if kind == "string":
        widget = "text"
        if shape.get("format") in MULTI_LINE or shape.get("maxLength", 0) > LONG_TEXT:
            widget = "textarea"
        attrs = {"type": INPUT_TYPES.get(str(shape.get("format")), "text")}
        if isinstance(shape.get("maxLength"), int):
            attrs["maxlength"] = str(shape["maxLength"])
        text = default if isinstance(default, str) else ""
        return make(widget, default=text, attrs=attrs)
    if kind in ("number", "integer"):
        attrs = {"step": "1" if kind == "integer" else "any"}
        for word, attr in (("minimum", "min"), ("maximum", "max")):
            if isinstance(shape.get(word), int | float):
                attrs[attr] = str(shape[word])
        return make(kind, default=_json_text(default), attrs=attrs)
    if kind == "boolean":
        return make("boolean", default=_json_text(default))
    if (
        kind == "object"
        and isinstance(shape.get("properties"), Mapping)
        and shape.get("additionalProperties", False) is False
    ):
        return make("group", children=tuple(_properties(shape, root, path)))
    if kind == "array" and not shape.get("prefixItems"):
        item, _ = _shape(shape.get("items", {}), root)
        item_choices = _choices(item)
        if item_choices is not None or item.get("type") in SCALARS:
            lines = "\n".join(_line(v) for v in default) if isinstance(default, list) else ""
            widget = "choice" if item_choices is not None else str(item["type"])
            return make("lines", default=lines, item=widget, choices=item_choices or ())
    return make("json", default="" if default is None else _pretty(default))


def _shape(node: Any, root: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
    """The schema ``node`` stands for, its ``$ref`` followed and an Optional's null
    taken off: the shape, and whether null is allowed too."""
    nullable = False
    for _ in range(32):  # $ref chains; a cycle ends as a JSON box
        if not isinstance(node, Mapping):
            return {}, nullable
        if isinstance(node.get("$ref"), str):
            node = _resolve(root, node["$ref"])
            continue
        options = node.get("anyOf") or node.get("oneOf")
        if isinstance(options, list):
            others = [
                o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")
            ]
            if len(others) == 1 and len(others) < len(options):
                nullable = True
                node = {
                    **{k: v for k, v in node.items() if k not in ("anyOf", "oneOf")},
                    **_as_map(others[0]),
                }
                continue
            return node, nullable
        all_of = node.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            node = {**{k: v for k, v in node.items() if k != "allOf"}, **_as_map(all_of[0])}
            continue
        kind = node.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"]
            nullable = nullable or len(kinds) < len(kind)
            if len(kinds) == 1:
                return {**node, "type": kinds[0]}, nullable
        return node, nullable
    return {}, nullable


def _as_map(node: Any) -> Mapping[str, Any]:
    return node if isinstance(node, Mapping) else {}


def _resolve(root: Mapping[str, Any], ref: str) -> Any:
    if ref == "#":
        return root
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _choices(shape: Mapping[str, Any]) -> tuple[Choice, ...] | None:
    if isinstance(shape.get("enum"), list) and shape["enum"]:
        values = shape["enum"]
    elif "const" in shape:
        values = [shape["const"]]
    else:
        return None
    return tuple(Choice(_json_text(v), v if isinstance(v, str) else _json_text(v)) for v in values)


def _json_text(value: Any) -> str:
    return "" if value is None else orjson.dumps(value).decode()


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _line(value: Any) -> str:
    return value if isinstance(value, str) else _json_text(value)


def child_path(path: str, name: str) -> str:
    """The JSON path of property ``name`` under ``path``, written as
    ``wait_schema.validate`` writes it: ``$.a`` for a plain name, ``$["a b"]`` else."""
    return f"{path}.{name}" if _NAME.match(name) else f"{path}[{json.dumps(name)}]"


# -- posted form -> JSON ---------------------------------------------------------------

_MISSING: Any = object()


def form_answer(schema: Mapping[str, Any], fields: list[Field], posted: Mapping[str, str]) -> Any:
    """The JSON a posted form makes, checked against ``schema``. ``FormInvalid`` with
    each problem beside its field: an input that is not what it should be (a number,
    JSON), and every way the result breaks the schema."""
    problems = Problems()
    if len(fields) == 1 and fields[0].path == ROOT:
        data = _value(fields[0], posted, problems)
        if data is _MISSING:
            data = None
            problems.fields.setdefault(ROOT, []).append("fill this in")
    else:
        data = _object(fields, posted, problems)
    if problems:
        unparsed = list(problems.fields)
        for violation in validate(schema, data):
            if not any(_under(violation.path, p) for p in unparsed):
                place(problems, violation, fields)
        raise FormInvalid(problems)
    violations = validate(schema, data)
    if violations:
        raise FormInvalid(placed(violations, fields))
    return data


def _object(
    fields: tuple[Field, ...] | list[Field], posted: Mapping[str, str], out: Problems
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for each in fields:
        value = _value(each, posted, out)
        if value is _MISSING:
            if each.required and each.nullable:
                value = None  # Optional but required: null says "none" where absent cannot
            else:
                continue  # not given: the schema's default, or "is required" from validate
        found[_last_name(each.path)] = value
    return found


def _value(each: Field, posted: Mapping[str, str], out: Problems) -> Any:
    if each.widget == "group":
        inner = _object(each.children, posted, out)
        return inner if inner or each.required else _MISSING
    raw = posted.get(each.path, "")
    if each.widget == "lines":
        items = []
        for number, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                items.append(_scalar(each.item, line.strip(), each, f"line {number}: ", out))
        return items if items or each.required else _MISSING
    if each.widget not in ("textarea", "json"):
        raw = raw.strip()
    if raw == "" or (each.widget == "textarea" and not raw.strip()):
        return _MISSING
    return _scalar(each.widget, raw, each, "", out)


def _scalar(widget: str, raw: str, each: Field, where: str, out: Problems) -> Any:
    def bad(message: str) -> Any:
        out.fields.setdefault(each.path, []).append(where + message)
        return None

    if widget in ("text", "textarea", "string"):
        return raw
    if widget == "integer":
        try:
            return int(raw)
        except ValueError:
            return bad(f"should be a whole number, such as 42, not {raw!r}")
    if widget == "number":
        try:
            number = float(raw)
        except ValueError:
            return bad(f"should be a number, such as 4.5, not {raw!r}")
        if not math.isfinite(number):
            return bad(f"should be a finite number, not {raw!r}")
        return int(number) if re.fullmatch(r"[+-]?\d+", raw) else number
    if widget == "boolean":
        if raw.lower() in ("true", "yes"):
            return True
        if raw.lower() in ("false", "no"):
            return False
        return bad(f"should be yes or no, not {raw!r}")
    if widget == "choice":
        for choice in each.choices:
            if raw in (choice.value, choice.label):
                return orjson.loads(choice.value)
        return bad(f"should be one of {', '.join(c.label for c in each.choices)}, not {raw!r}")
    try:
        return loads_strict(raw)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        return bad(f"is not valid JSON: {exc}")


def _last_name(path: str) -> str:
    if path.endswith('"]'):
        return str(json.loads(path[path.rindex('["') + 1 : -1]))
    return path.rsplit(".", 1)[1]


# -- violations -> fields --------------------------------------------------------------


def placed(violations: list[Violation], fields: list[Field]) -> Problems:
    """``violations`` (from ``validate``, or a ``PayloadInvalid``) beside the fields
    they are about; those about no field are about the answer as a whole."""
    problems = Problems()
    for violation in violations:
        place(problems, violation, fields)
    return problems


def place(problems: Problems, violation: Violation, fields: list[Field]) -> None:
    paths = [p for p in _paths(fields) if _under(violation.path, p)]
    if not paths:
        where = "" if violation.path == ROOT else f"{violation.path} "
        problems.general.append(f"{where}{violation.message}")
        return
    owner = max(paths, key=len)
    rest = violation.path[len(owner) :]
    item = re.match(r"\[(\d+)\]", rest)
    if item:
        prefix = f"item {int(item.group(1)) + 1}{rest[item.end() :]}: "
    else:
        prefix = f"{rest.lstrip('.')}: " if rest else ""
    problems.fields.setdefault(owner, []).append(prefix + violation.message)


def _paths(fields: tuple[Field, ...] | list[Field]) -> list[str]:
    found = []
    for each in fields:
        found.append(each.path)
        found += _paths(each.children)
    return found


def _under(path: str, owner: str) -> bool:
    if owner == ROOT:
        return True
    return path == owner or path.startswith((owner + ".", owner + "["))
