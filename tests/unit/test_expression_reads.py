"""An expression is handed only what it reads of the incoming event, and decides the
same as with the whole event."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from tarry.expressions import compile_expression

EXPRESSIONS = [
    'async.data.completionId == "abc" && async.data.n > 3',
    "has(async.data.x) && !has(async.data.y)",
    "async.data.items.exists(i, i.v == 1)",
    "size(async.data) > 2",
    "async.name == event.name && async.data.user.id == event.data.user.id",
    'async.data["k"] == 1 || async.data.k == 2',
    "[async.data.a, async.id].size() == 2 && async.data.a.b == 1",
    "async.data.deep.a.b.c == 'x'",
    "size(async) == 4",
]


def random_event(rng: random.Random) -> dict[str, Any]:
    def value(depth: int) -> Any:
        roll = rng.random()
        if depth > 3 or roll < 0.4:
            return rng.choice([1, 2, 3, "abc", "x", None, True, 1.5])
        if roll < 0.6:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        keys = rng.sample(["x", "y", "n", "k", "a", "b", "c", "v", "id", "user", "deep"], 3)
        return {key: value(depth + 1) for key in keys}

    data = (
        value(0)
        if rng.random() < 0.2
        else {
            key: value(1)
            for key in rng.sample(
                ["completionId", "n", "x", "y", "items", "k", "a", "deep", "user"], 5
            )
        }
    )
    if isinstance(data, dict) and rng.random() < 0.5:
        data["items"] = [{"v": rng.choice([0, 1])} for _ in range(3)]
    return {"name": rng.choice(["e", "f"]), "data": data, "id": "i1", "ts": 1.0}


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_pruned_and_whole_events_decide_alike(source: str) -> None:
    expr = compile_expression(source)
    whole = type(expr)(expr.source, expr._program, expr._equalities, None)
    rng = random.Random(source)
    trigger = {"name": "e", "data": {"user": {"id": 1}}}
    seen = set()
    for _ in range(400):
        event = random_event(rng)
        before = copy.deepcopy(event)
        decided = expr.evaluate(trigger, event)
        assert decided == whole.evaluate(trigger, event), event
        assert event == before  # pruning never touches the event itself
        seen.add(decided)
    assert expr._reads is None or expr._reads  # something was read


def test_what_each_expression_reads() -> None:
    reads = {source: compile_expression(source)._reads for source in EXPRESSIONS}
    assert reads[EXPRESSIONS[0]] == ("data.completionId", "data.n")
    assert reads[EXPRESSIONS[1]] == ("data.x", "data.y")
    assert reads[EXPRESSIONS[2]] == ("data.items",)
    assert reads[EXPRESSIONS[4]] == ("data.user.id", "name")
    assert reads[EXPRESSIONS[5]] == ("data",)
    assert reads[EXPRESSIONS[8]] is None
