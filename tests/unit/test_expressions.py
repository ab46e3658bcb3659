"""CEL compile, evaluate, equality extraction and path helpers (tarry.expressions)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest

from tarry.errors import ExpressionError
from tarry.expression_ast import Equality
from tarry.expressions import (
    Expression,
    compile_expression,
    indexable_equalities,
    match_to_equality,
    resolve_path,
)


def make_event(data: Any, name: str = "app/thing", event_id: str = "evt-1") -> dict[str, Any]:
    return {"name": name, "data": data, "id": event_id, "ts": datetime(2026, 1, 2, tzinfo=UTC)}


def equalities(source: str) -> list[Equality]:
    return indexable_equalities(compile_expression(source))


# --- compile and evaluate -------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "data", "expected"),
    [
        ('async.data.x == "a"', {"x": "a"}, True),
        ('async.data.x == "a"', {"x": "b"}, False),
        ("async.data.n > 3", {"n": 4}, True),
        ("async.data.n > 3", {"n": 3}, False),
        ("async.data.n > 3", {"n": 3.5}, True),
        ("async.data.n == 4", {"n": 4.0}, True),
        ("async.data.ok", {"ok": True}, True),
        ("!async.data.ok", {"ok": True}, False),
        ("async.data.v == null", {"v": None}, True),
        ('async.data.tags.exists(t, t == "vip")', {"tags": ["a", "vip"]}, True),
        ('async.data.tags.exists(t, t == "vip")', {"tags": ["a"]}, False),
        ('async.data.email.endsWith("@example.com")', {"email": "a@example.com"}, True),
        ("has(async.data.x)", {"x": 1}, True),
        ("has(async.data.x)", {"y": 1}, False),
        ("size(async.data.items) == 2", {"items": [1, 2]}, True),
        ('async.data["user-id"] == 7', {"user-id": 7}, True),
    ],
)
def test_evaluate(source: str, data: dict[str, Any], expected: bool) -> None:
    assert compile_expression(source).evaluate(None, make_event(data)) is expected


def test_spec_example() -> None:
    expr = compile_expression('async.data.completionId == "abc" && async.data.n > 3')
    assert isinstance(expr, Expression)
    assert expr.source == 'async.data.completionId == "abc" && async.data.n > 3'
    assert expr.evaluate(None, make_event({"completionId": "abc", "n": 4})) is True
    assert expr.evaluate(None, make_event({"completionId": "abc", "n": 3})) is False
    assert expr.evaluate(None, make_event({"completionId": "abd", "n": 9})) is False


def test_expression_over_trigger_and_incoming() -> None:
    expr = compile_expression(
        'async.data.userId == event.data.userId && event.name == "signup" && async.data.n > 3'
    )
    trigger = make_event({"userId": "u1"}, name="signup", event_id="evt-0")
    assert expr.evaluate(trigger, make_event({"userId": "u1", "n": 5})) is True
    assert expr.evaluate(trigger, make_event({"userId": "u2", "n": 5})) is False
    assert expr.evaluate(trigger, make_event({"userId": "u1", "n": 1})) is False
    other_trigger = make_event({"userId": "u1"}, name="other")
    assert expr.evaluate(other_trigger, make_event({"userId": "u1", "n": 5})) is False


def test_trigger_fields_other_than_data() -> None:
    expr = compile_expression('event.id == "evt-0" && async.id != event.id')
    trigger = make_event({}, event_id="evt-0")
    assert expr.evaluate(trigger, make_event({}, event_id="evt-1")) is True
    assert expr.evaluate(trigger, make_event({}, event_id="evt-0")) is False


def test_missing_trigger_is_no_match() -> None:
    expr = compile_expression("async.data.userId == event.data.userId")
    assert expr.evaluate(None, make_event({"userId": "u1"})) is False


@pytest.mark.parametrize(
    "incoming",
    [
        make_event({}),  # key missing
        make_event({"completionId": "abc"}),  # second key missing
        {"name": "app/thing"},  # no data at all
        make_event(None),  # data is null
        make_event("a string"),  # data is not a map
        make_event({"completionId": 1, "n": 4}),  # wrong type for ==: false, not an error
        make_event({"completionId": "abc", "n": "4"}),  # no overload for string > int
    ],
)
def test_missing_keys_and_type_errors_are_no_match(incoming: dict[str, Any]) -> None:
    expr = compile_expression('async.data.completionId == "abc" && async.data.n > 3')
    assert expr.evaluate(None, incoming) is False


def test_error_in_a_short_circuited_branch_does_not_hide_a_match() -> None:
    expr = compile_expression('async.data.missing == 1 || async.data.x == "a"')
    assert expr.evaluate(None, make_event({"x": "a"})) is True


@pytest.mark.parametrize("source", ["async.data.n", "1 + 2", '"yes"', "async.data", "[true]"])
def test_non_bool_result_is_no_match(source: str) -> None:
    assert compile_expression(source).evaluate(None, make_event({"n": 1})) is False


def test_datetime_ts_is_usable_as_timestamp() -> None:
    expr = compile_expression('timestamp(async.ts) > timestamp("2026-01-01T00:00:00Z")')
    assert expr.evaluate(None, make_event({})) is True
    late = {**make_event({}), "ts": datetime(2025, 6, 1, tzinfo=UTC)}
    assert expr.evaluate(None, late) is False


def test_non_dict_mappings_and_tuples_are_converted() -> None:
    expr = compile_expression('async.data.x == "a" && async.data.pair == [1, 2]')
    incoming = MappingProxyType({"data": MappingProxyType({"x": "a", "pair": (1, 2)})})
    assert expr.evaluate(None, incoming) is True


def test_unconvertible_value_is_no_match_not_an_exception() -> None:
    expr = compile_expression("async.data.x == 1")
    assert expr.evaluate(None, make_event({"x": object()})) is False


# --- compile errors -------------------------------------------------------------------


def test_syntax_error_reports_expression_position_and_reason() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression('async.data.x == "a" &&')
    message = str(info.value)
    assert "'async.data.x == \"a\" &&'" in message
    assert "line 1, column 23" in message
    assert "Syntax error" in message


def test_error_position_on_a_later_line() -> None:
    with pytest.raises(ExpressionError, match=r"line 2, column 6: Syntax error"):
        compile_expression('async.data.x == "a"\n  && && async.data.n > 3')


def test_unclosed_string_is_an_error() -> None:
    with pytest.raises(ExpressionError, match=r"line 1, column 17"):
        compile_expression('async.data.x == "abc')


def test_unknown_variable_is_a_compile_error() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("evnt.data.x == 1")
    assert "line 1, column" in str(info.value)
    assert "undeclared reference to 'evnt.data.x'" in str(info.value)


def test_type_error_found_at_compile_time() -> None:
    with pytest.raises(ExpressionError, match=r"line 1, column 3: .*no matching overload"):
        compile_expression("1 + 'a' == 2")


@pytest.mark.parametrize("source", ["", "   ", "\n", None, 42, b"async.x == 1"])
def test_empty_or_non_string_source_is_rejected(source: Any) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(source)


def test_expression_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        compile_expression("(")


# --- caching and immutability ---------------------------------------------------------


def test_compiled_expressions_are_cached() -> None:
    first = compile_expression('async.data.cache == "same"')
    assert compile_expression('async.data.cache == "same"') is first
    assert compile_expression('async.data.cache == "other"') is not first


def test_expression_is_immutable() -> None:
    expr = compile_expression("async.data.x == 1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        expr.source = "true"  # type: ignore[misc]


# --- equality extraction --------------------------------------------------------------


def test_extracts_literal_equality() -> None:
    assert equalities('async.data.completionId == "abc" && async.data.n > 3') == [
        Equality(path="data.completionId", value="abc", event_path=None)
    ]


def test_extracts_event_reference() -> None:
    assert equalities("async.data.userId == event.data.userId") == [
        Equality(path="data.userId", value=None, event_path="data.userId")
    ]


def test_extracts_either_operand_order() -> None:
    assert equalities('"abc" == async.data.id && event.data.user.id == async.data.owner') == [
        Equality(path="data.id", value="abc", event_path=None),
        Equality(path="data.owner", value=None, event_path="data.user.id"),
    ]


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ('"s"', "s"),
        ("'single'", "single"),
        ("42", 42),
        ("-7", -7),
        ("-9223372036854775808", -9223372036854775808),
        ("18446744073709551615u", 18446744073709551615),
        ("2.5", 2.5),
        ("-0.25", -0.25),
        ("true", True),
        ("false", False),
        ("null", None),
        ('"ünïcode"', "ünïcode"),
    ],
)
def test_literal_kinds(literal: str, value: Any) -> None:
    [equality] = equalities(f"async.data.k == {literal}")
    assert equality == Equality(path="data.k", value=value, event_path=None)
    assert type(equality.value) is type(value)


def test_several_conjuncts_in_order_with_nested_parentheses() -> None:
    source = '((async.a == 1) && (async.data.b == "x" && (true && async.c.d == event.e)))'
    assert equalities(source) == [
        Equality(path="a", value=1),
        Equality(path="data.b", value="x"),
        Equality(path="c.d", value=None, event_path="e"),
    ]


@pytest.mark.parametrize(
    "source",
    [
        "async.data.a == 1 || async.data.b == 2",
        '(async.data.a == 1 && async.data.b == 2) || async.name == "x"',
        "!(async.data.a == 1)",
        "async.data.a != 1",
        "(async.data.a == 1) == true",
        'async.data.s.startsWith("a")',
        "has(async.data.a)",
        "has(async.data.a) == true",
        "async.data.a == async.data.b",
        "event.data.a == 1",
        "event.data.a == event.data.b",
        "async == event",
        "async.data == event",
        'async.data["a"] == 1',
        "async.data.a == [1]",
        'async.data.a == {"k": 1}',
        "async.data.a == 1 + 1",
        'async.data.a == b"bytes"',
        "async.data.a == string(1)",
        "size(async.data.a) == 1",
        "async.data.list.exists(x, x == 1)",
        "[1, 2].exists(a, async.data.a == a)",
        "async.data.a == 1 ? true : false",
        "async.data.`a.b` == 1",
    ],
)
def test_nothing_extracted_outside_top_level_equalities(source: str) -> None:
    assert equalities(source) == []


def test_only_the_indexable_part_of_a_mixed_conjunction() -> None:
    source = 'async.data.a == 1 && (async.data.b == 2 || async.data.c == 3) && !(async.d == "x")'
    assert equalities(source) == [Equality(path="data.a", value=1)]


def test_backquoted_field_without_dot_is_extracted() -> None:
    assert equalities('async.data.`user-id` == "u1"') == [Equality(path="data.user-id", value="u1")]


def test_duplicate_conjuncts_are_reported_once() -> None:
    assert equalities("async.a == 1 && async.a == 1") == [Equality(path="a", value=1)]


def test_extraction_agrees_with_evaluation() -> None:
    expr = compile_expression('async.data.id == "abc" && async.data.owner == event.data.user')
    trigger = make_event({"user": "u1"})
    incoming = make_event({"id": "abc", "owner": "u1"})
    assert expr.evaluate(trigger, incoming) is True
    for equality in indexable_equalities(expr):
        found, value = resolve_path(incoming, equality.path)
        assert found
        if equality.event_path is None:
            assert value == equality.value
        else:
            assert resolve_path(trigger, equality.event_path) == (True, value)


def test_returned_list_is_a_copy() -> None:
    expr = compile_expression("async.a == 1")
    indexable_equalities(expr).clear()
    assert indexable_equalities(expr) == [Equality(path="a", value=1)]


# --- match= and paths -----------------------------------------------------------------


def test_match_to_equality() -> None:
    assert match_to_equality("data.userId") == Equality(
        path="data.userId", value=None, event_path="data.userId"
    )
    assert match_to_equality("name") == Equality(path="name", value=None, event_path="name")


@pytest.mark.parametrize(
    "match", ["", ".", "data.", ".data", "data..id", "data.user-id", "data. id", "1x", None, 3]
)
def test_match_to_equality_rejects_bad_paths(match: Any) -> None:
    with pytest.raises(ExpressionError):
        match_to_equality(match)


def test_equality_is_frozen_and_hashable() -> None:
    equality = Equality(path="a", value=1, event_path=None)
    assert {equality, Equality("a", 1, None)} == {equality}
    with pytest.raises(dataclasses.FrozenInstanceError):
        equality.path = "b"  # type: ignore[misc]


def test_resolve_path() -> None:
    event = {"name": "n", "data": {"user": {"id": "u1", "none": None}, "list": [1]}}
    assert resolve_path(event, "name") == (True, "n")
    assert resolve_path(event, "data.user.id") == (True, "u1")
    assert resolve_path(event, "data.user") == (True, {"id": "u1", "none": None})
    assert resolve_path(event, "data.user.none") == (True, None)
    assert resolve_path(event, "data.user.missing") == (False, None)
    assert resolve_path(event, "data.missing.id") == (False, None)
    assert resolve_path(event, "data.user.id.deeper") == (False, None)
    assert resolve_path(event, "data.list.0") == (False, None)
    assert resolve_path(MappingProxyType({"a": MappingProxyType({"b": 2})}), "a.b") == (True, 2)
