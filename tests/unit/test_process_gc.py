"""``process_gc``: the collector of a process tarry's CLI owns."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from tarry.process_gc import YOUNG_THRESHOLD, parse_gc_mode, tune_gc


@pytest.fixture
def collector() -> Iterator[None]:
    """The test's process gets its collector back as it was."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tuned_freezes_what_is_loaded_and_collects_young_objects_less_often(
    collector: None,
) -> None:
    _, middle, old = gc.get_threshold()
    alive = [object() for _ in range(3)] + [{"loaded": True}]
    tune_gc("tuned")
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
    assert gc.get_freeze_count() > 0
    assert not any(obj is alive[-1] for obj in gc.get_objects())  # frozen: out of every pass


def test_tuned_frees_garbage_before_it_freezes(collector: None) -> None:
    class Node:
        other: Node

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    gc.disable()  # no pass of its own between here and tune_gc
    try:
        del a, b
        assert gone() is not None
        tune_gc("tuned")
        assert gone() is None  # collected, not frozen for good
    finally:
        gc.enable()


def test_python_leaves_the_collector_as_it_is(collector: None) -> None:
    before = gc.get_threshold(), gc.get_freeze_count()
    tune_gc("python")
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


@pytest.mark.parametrize("given", ["tuned", "python", " Tuned ", "PYTHON"])
def test_the_modes_are_read_in_any_case(given: str) -> None:
    assert parse_gc_mode(given) == given.strip().lower()


@pytest.mark.parametrize("given", ["", "off", "fast"])
def test_another_mode_is_refused_with_the_choices(given: str) -> None:
    with pytest.raises(ValueError, match=r"'tuned' or 'python'.*'tuned' \(the default\)"):
        parse_gc_mode(given)
