"""The equality index keys events and waiters are filed under."""

from __future__ import annotations

from tarry.store.matching import canonical, leaf_keys


def test_canonical_index_keys() -> None:
    assert canonical(3.0) == canonical(3) == "3"
    assert canonical(1.8446744073709552e19) == "1.8446744073709552e+19"
    assert canonical("a") == '"a"' and canonical(True) == "true" and canonical(None) == "null"


def test_leaf_keys_offer_every_scalar_under_data() -> None:
    event = {"name": "app/x", "id": "e1", "data": {"a": 1, "b": {"c": "d"}, "l": [1, 2]}}
    assert sorted(leaf_keys(event)) == [
        ("data.a", "1"),
        ("data.b.c", '"d"'),
        ("id", '"e1"'),
        ("name", '"app/x"'),
    ]
