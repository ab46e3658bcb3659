"""wait_schema: normalising ``schema=``, checking data against it, the approval shape."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, Literal

import orjson
import pytest
from pydantic import BaseModel, Field

import tarry
from tarry.errors import ConfigError, PayloadInvalid, Violation
from tarry.wait_schema import is_approval, validate, wait_schema


class Line(BaseModel):
    sku: str = Field(min_length=3, max_length=8)
    quantity: int = Field(ge=1, le=100)


class Order(BaseModel):
    lines: list[Line]
    priority: Literal["low", "high"] = "low"
    note: str | None = None
    parent: Order | None = None


def errors(schema: Any, data: Any) -> list[tuple[str, str]]:
    normalised = wait_schema(schema)
    assert normalised is not None
    return [tuple(v) for v in validate(normalised.encoded, data)]  # type: ignore[misc]


def test_a_model_becomes_its_json_schema_and_valid_data_passes() -> None:
    normalised = wait_schema(Order)
    assert normalised is not None and normalised.model is Order
    assert normalised.json == orjson.loads(normalised.encoded)
    assert "$defs" in normalised.json  # pydantic's nested models: $defs and $ref
    data = {"lines": [{"sku": "abc", "quantity": 2}], "parent": {"lines": []}}
    assert validate(normalised.encoded, data) == []
    assert validate(normalised.json, data) == []  # a decoded schema works the same


def test_each_violation_names_its_json_path() -> None:
    data = {
        "lines": [{"sku": "ab", "quantity": 0}, {"quantity": "many"}],
        "priority": "urgent",
        "note": 7,
    }
    assert errors(Order, data) == [
        ("$.lines[0].sku", "should have at least 3 characters, has 2"),
        ("$.lines[0].quantity", "should be at least 1, got 0"),
        ("$.lines[1].sku", "is required"),
        ("$.lines[1].quantity", "should be an integer, got string"),
        ("$.priority", 'should be one of "low", "high", got "urgent"'),
        ("$.note", "should be a string or null, got integer"),
    ]


def test_optional_nested_model_reports_the_inner_errors() -> None:
    assert errors(Order, {"lines": [], "parent": {"lines": [{"sku": "abcd"}]}}) == [
        ("$.parent.lines[0].quantity", "is required")
    ]


def test_a_dict_schema_checks_the_listed_keywords() -> None:
    schema = {
        "type": "object",
        "properties": {
            "kind": {"const": "refund"},
            "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 500,
                       "multipleOf": 0.01},
            "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"},
                     "maxItems": 2, "uniqueItems": True},
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
            "choice": {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 10}]},
            "never": {"not": {"type": "string"}},
        },
        "required": ["kind", "amount"],
        "additionalProperties": False,
    }  # fmt: skip
    ok = {"kind": "refund", "amount": 12.5, "tags": ["a"], "pair": [1, "x"], "choice": 12.5}
    assert errors(schema, ok) == []
    bad = {
        "kind": "charge",
        "amount": 0,
        "tags": ["a", "a", "B"],
        "pair": [1, 2],
        "choice": 12,
        "never": "s",
        "extra": True,
    }
    assert errors(schema, bad) == [
        ("$.kind", 'should be "refund"'),
        ("$.amount", "should be above 0, got 0"),
        ("$.tags[2]", "should match the pattern '^[a-z]+$'"),
        ("$.tags", "should have at most 2 items, has 3"),
        ("$.tags[1]", "repeats an earlier item"),
        ("$.pair[1]", "should be a string, got integer"),
        ("$.choice", "fits 2 of the allowed shapes, it should fit one"),
        ("$.never", "matches a shape that is not allowed here"),
        ("$.extra", "is not an allowed property"),
    ]
    # Of the options, only the one the type lets through reports its own errors.
    assert errors(schema, {**ok, "choice": 2.5}) == [("$.choice", "should be at least 10, got 2.5")]


def test_json_equality_keeps_booleans_apart_from_numbers() -> None:
    assert errors({"enum": [1, "x"]}, True) == [("$", 'should be one of 1, "x", got true')]
    assert errors({"const": 1}, 1.0) == []
    assert errors({"type": "integer"}, 2.0) == []
    assert errors({"type": "integer"}, False) == [("$", "should be an integer, got boolean")]


def test_odd_property_names_are_quoted_in_paths() -> None:
    schema = {"type": "object", "properties": {"a b": {"type": "string"}}}
    assert errors(schema, {"a b": 1}) == [('$["a b"]', "should be a string, got integer")]


def test_a_ref_cycle_and_deep_data_end_with_a_violation() -> None:
    assert errors({"$ref": "#"}, 1) == [("$", "the schema refers to itself without end")]
    nested: Any = []
    for _ in range(5000):
        nested = [nested]
    schema = {"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}},
              "$ref": "#/$defs/n"}  # fmt: skip
    assert errors(schema, nested) == [("$", "is nested too deeply to check")]


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("an-order", "takes a pydantic model class or a JSON Schema dict, got str 'an-order'"),
        (Line(sku="abc", quantity=1), "got an instance of Line (pass the class itself)"),
        (dict, "got the class dict (not a pydantic model)"),
        ({"type": "text"}, "#/type names unknown types ['text']"),
        ({"if": {"type": "string"}}, "# uses 'if', which tarry does not check"),
        ({"properties": {"x": {"$ref": "#/$defs/Missing"}}}, "does not point into this schema"),
        ({"pattern": "("}, "is not a regular expression"),
        ({"minimum": "1"}, "#/minimum must be a number"),
        ({"type": "object", "default": object()}, "is not JSON"),
    ],
)
def test_what_is_not_a_schema_tarry_checks_is_a_config_error(given: Any, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        wait_schema(given)
    assert said in str(caught.value)


def test_annotations_and_extension_keywords_are_accepted() -> None:
    schema = {"title": "T", "description": "d", "format": "email", "x-ui": "wide",
              "$schema": "https://json-schema.org/draft/2020-12/schema",
              "type": "string"}  # fmt: skip
    assert errors(schema, "someone") == []


def test_parse_returns_the_model_and_turns_its_own_validators_into_violations() -> None:
    class Strict(BaseModel):
        code: str

        def model_post_init(self, context: Any) -> None:
            if self.code == "nope":
                raise ValueError("code nope is retired")

    normalised = wait_schema(Strict)
    assert normalised is not None
    assert normalised.parse({"code": "ok"}) == Strict(code="ok")
    with pytest.raises(PayloadInvalid) as caught:
        normalised.parse({"code": "nope"})
    assert caught.value.errors == [Violation("$", "Value error, code nope is retired")]
    assert wait_schema({"type": "string"}).parse("x") == "x"  # type: ignore[union-attr]


def test_the_approval_shape_is_recognised() -> None:
    assert is_approval(wait_schema(tarry.Approval).encoded)  # type: ignore[union-attr]
    hand_written = {
        "type": "object",
        "properties": {"approved": {"type": "boolean"}, "by": {"type": "string"}},
        "required": ["by", "approved"],
    }
    assert is_approval(orjson.dumps(hand_written))
    assert not is_approval(None)
    assert not is_approval(wait_schema(Order).encoded)  # type: ignore[union-attr]
    needs_more = {**hand_written, "required": ["approved", "by", "text"]}
    assert not is_approval(needs_more)
    no_comment = {**hand_written, "additionalProperties": False}
    assert not is_approval(no_comment)
    assert tarry.Approval(approved=True, by="ana").comment is None


def test_import_tarry_does_not_import_pydantic() -> None:
    code = (
        "import sys, tarry, tarry.wait_schema as w\n"
        "w.validate({'type': 'object', 'required': ['a']}, {})\n"
        "assert 'pydantic' not in sys.modules, 'pydantic imported'\n"
        "tarry.Approval\n"
        "assert 'pydantic' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_models_fields_keep_their_order_in_the_stored_schema() -> None:
    class Person(BaseModel):
        name: str
        email: str
        age: int

    shape = wait_schema(Person)
    assert shape is not None
    assert list(orjson.loads(shape.encoded)["properties"]) == ["name", "email", "age"]
