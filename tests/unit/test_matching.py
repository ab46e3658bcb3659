"""The equality index keys events and waiters are filed under."""

from __future__ import annotations

from tarry.store.matching import canonical, index_value, value_at


def test_canonical_index_keys() -> None:
    assert canonical(3.0) == canonical(3) == "3"
    assert canonical(1.8446744073709552e19) == "1.8446744073709552e+19"
    assert canonical("a") == '"a"' and canonical(True) == "true" and canonical(None) == "null"


def test_an_event_offers_the_scalar_at_a_path_at_any_depth() -> None:
    event = {"name": "app/x", "id": "e1", "data": {"a": 1.0, "b": {"c": "d"}, "l": [1, 2]}}
    assert value_at(event, "data.a") == "1"
    assert value_at(event, "data.b.c") == '"d"'
    assert value_at(event, "name") == '"app/x"'
    assert value_at(event, "data.missing") is None
    assert value_at(event, "data.l") is None and value_at(event, "data.b") is None


def test_long_values_are_filed_under_a_digest() -> None:
    short, long = canonical("x" * 10), canonical("x" * 1000)
    assert index_value(short) == short
    assert index_value(long).startswith("#sha256:") and len(index_value(long)) < 100
    assert value_at({"data": {"k": "x" * 1000}}, "data.k") == index_value(long)
