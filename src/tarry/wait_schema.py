"""What a typed wait expects: its ``schema=`` made the JSON Schema kept with it.

``schema=`` on a wait (or a callback token) is a pydantic model class or a JSON
Schema dict; ``wait_schema`` turns either into the JSON Schema the store keeps with
the wait, refusing one that ``json_schema`` cannot check. The store checks data
against it with ``json_schema.validate`` (re-exported here), never with pydantic:
a worker or a client without pydantic still checks a schema a model produced
elsewhere. Also here: the approval shape, and a refusal kept as a failed step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import ConfigError, PayloadInvalid, Violation
from .json_schema import child, decoded, resolve, schema_problems, validate

__all__ = [
    "WaitSchema",
    "is_approval",
    "validate",
    "wait_schema",
]


@dataclass(frozen=True, slots=True)
class WaitSchema:
    """A wait's ``schema=``: the JSON Schema kept with the wait (``encoded``) and the
    pydantic model the wait returns, when a model was given."""

    json: dict[str, Any] = field(compare=False)
    encoded: bytes
    model: type[Any] | None = field(default=None, compare=False)

    def parse(self, data: Any) -> Any:
        """What the wait returns for ``data`` the store already checked: the model
        instance (its own validators run here too), or the data as it is."""
        if self.model is None:
            return data
        from pydantic import ValidationError  # only a model brings pydantic here

        try:
            return self.model.model_validate(data)
        except ValidationError as exc:
            errors = [
                Violation(_pydantic_path(err.get("loc", ())), str(err.get("msg", "invalid")))
                for err in exc.errors()
            ]
            raise PayloadInvalid(errors, f"data for {self.model.__name__}") from None


def wait_schema(schema: object, *, what: str = "schema=") -> WaitSchema | None:
    """Normalise a ``schema=`` argument; None stays None. Anything but a pydantic
    model class or a JSON Schema dict, or a schema tarry cannot check, raises
    ``ConfigError`` naming ``what`` was given."""
    if schema is None:
        return None
    if _is_model_class(schema):
        assert isinstance(schema, type)
        model: Any = schema
        try:
            produced = model.model_json_schema()
        except Exception as exc:  # pydantic raises its own errors for odd fields
            raise ConfigError(
                f"{what} {schema.__name__} has no JSON Schema ({exc}); give a model whose "
                "fields pydantic can describe, or a JSON Schema dict"
            ) from None
        return _checked(produced, what, schema)
    if isinstance(schema, Mapping):
        return _checked(dict(schema), what, None)
    raise ConfigError(
        f"{what} takes a pydantic model class or a JSON Schema dict, got {_given(schema)}"
    )


def _is_model_class(value: object) -> bool:
    # Duck-typed so that a library without pydantic never imports it.
    return isinstance(value, type) and all(
        callable(getattr(value, name, None)) for name in ("model_json_schema", "model_validate")
    )


def _given(value: object) -> str:
    if isinstance(value, type):
        return f"the class {value.__qualname__} (not a pydantic model)"
    if _is_model_class(type(value)):
        return f"an instance of {type(value).__name__} (pass the class itself)"
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


def _checked(schema: dict[str, Any], what: str, model: type[Any] | None) -> WaitSchema:
    try:  # keys in the order given: a form shows a model's fields in its order
        encoded = orjson.dumps(schema)
    except TypeError as exc:
        raise ConfigError(f"{what} is not JSON: {exc}") from None
    problem = next(schema_problems(schema, schema, "#"), None)
    if problem is not None:
        raise ConfigError(f"{what} is not a JSON Schema tarry can check: {problem}")
    return WaitSchema(orjson.loads(encoded), encoded, model)


def _pydantic_path(loc: Any) -> str:
    path = "$"
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else child(path, str(part))
    return path


# -- the approval shape ----------------------------------------------------------------


def is_approval(schema_json: bytes | str | Mapping[str, Any] | None) -> bool:
    """Whether a wait's schema is the approval shape (``tarry.Approval``): an object
    that requires ``approved`` (a boolean) and ``by`` (a string), may take a
    ``comment`` (a string or null), and requires nothing else. A person's
    Approve/Reject buttons send exactly such data, so a dashboard offers them only
    for these waits."""
    if schema_json is None:
        return False
    schema = decoded(schema_json) if isinstance(schema_json, bytes | str) else schema_json
    root = schema
    if isinstance(schema, Mapping) and "$ref" in schema and len(schema) <= 2:
        schema = resolve(root, schema["$ref"])
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        return False
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or set(schema.get("required", ())) != {
        "approved",
        "by",
    }:
        return False
    samples = [
        {"approved": True, "by": "a person"},
        {"approved": False, "by": "a person", "comment": "a reason"},
        {"approved": False, "by": "a person", "comment": None},
    ]
    return (
        _is_typed(properties.get("approved"), "boolean")
        and _is_typed(properties.get("by"), "string")
        and all(not validate(root, sample) for sample in samples)
    )


def _is_typed(schema: Any, name: str) -> bool:
    return isinstance(schema, Mapping) and schema.get("type") == name


# -- a refusal as a step keeps it ------------------------------------------------------


def refused_signal(key: str, run_id: str, errors: list[Violation]) -> PayloadInvalid:
    """What a send of a signal whose data the wait of ``run_id`` refused raises."""
    return PayloadInvalid(errors, f"the data of signal {key!r} (to run {run_id!r})")


def invalid_error(invalid: PayloadInvalid) -> bytes:
    """A refusal as a failed step keeps it: its type, message and violations."""
    errors = [{"path": e.path, "message": e.message} for e in invalid.errors]
    return orjson.dumps({"type": "PayloadInvalid", "message": str(invalid), "errors": errors})


def invalid_from(error: bytes | None) -> PayloadInvalid:
    """The refusal a failed step keeps, raised again when the run replays it."""
    info = orjson.loads(error) if error else {}
    errors = [Violation(str(e["path"]), str(e["message"])) for e in info.get("errors", ())]
    return PayloadInvalid(errors, message=str(info.get("message", "the data was refused")))
