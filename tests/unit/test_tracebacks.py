"""Tracebacks kept with failed attempts: whole when small, bounded when not, with
the top and the raising frame kept."""

from __future__ import annotations

from tarry.tracebacks import LIMIT, format_bounded


def user_function_that_fails(depth: int) -> None:
    if depth == 0:
        raise ValueError("the bottom")
    other_user_function(depth - 1)  # alternating frames are not folded by Python


def other_user_function(depth: int) -> None:
    user_function_that_fails(depth)


def caught(depth: int) -> BaseException:
    try:
        user_function_that_fails(depth)
    except ValueError as exc:
        return exc
    raise AssertionError("unreachable")


def test_a_small_traceback_is_kept_whole() -> None:
    text = format_bounded(caught(2))
    assert text.startswith("Traceback (most recent call last):")
    assert text.count("in user_function_that_fails") == 3
    assert text.rstrip().endswith("ValueError: the bottom")


def test_a_deep_traceback_is_cut_to_the_limit_keeping_both_ends() -> None:
    text = format_bounded(caught(150))
    assert len(text) <= LIMIT
    assert text.startswith("Traceback (most recent call last):")
    assert "in caught" in text[: LIMIT // 4]  # the top: where it was called
    assert "characters cut" in text
    assert text.rstrip().endswith("ValueError: the bottom")  # where it raised


def test_causes_are_kept() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as exc:
        text = format_bounded(exc, limit=10_000)
    assert "KeyError: 'inner'" in text and "RuntimeError: outer" in text
