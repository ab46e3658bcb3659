"""The rules for every string the store indexes, checked before anything is stored.

Run ids, workflow ids, step ids, signal keys, event names and ids, and message
names are keys of indexes on both stores. Each must be a non-empty string of at
most ``MAX_NAME`` characters, valid UTF-8, without NUL (PostgreSQL text cannot
hold it). ``MAX_NAME`` keeps every index entry well inside PostgreSQL's limit
of about 2.7 KB, whatever the characters. A value a wait is matched on
(``match=``) has no limit: a long one is filed under its digest.
"""

from __future__ import annotations

import hashlib

MAX_NAME = 256
"""The longest run id, workflow id, step id, signal key, event name or id, or message
name, in characters."""


def check_name(value: object, what: str) -> str:
    """``value`` if it may be stored as ``what`` (e.g. "signal key"), else ValueError
    saying what is wrong with it."""
    if (
        type(value) is str
        and 0 < len(value) <= MAX_NAME
        and value.isascii()
        and "\x00" not in value
    ):
        return value  # the common case, checked on every step of every replay
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {_show(value)}")
    if len(value) > MAX_NAME:
        raise ValueError(
            f"{what} is {len(value):,} characters long, over the limit of {MAX_NAME}: "
            f"{_show(value)}"
        )
    if "\x00" in value:
        raise ValueError(f"{what} must not contain a NUL character: {_show(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{what} is not valid Unicode text (a lone surrogate): {_show(value)}"
        ) from None
    return value


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}...{text[-12:]}"


def child_run_id(run_id: str, step_key: str) -> str:
    """The id of the run that step ``step_key`` of run ``run_id`` invokes: the same on
    every replay. ``<run>.<step>`` while that fits the limit; past it (children of
    children of ...) a prefix and a digest of the whole, so that ids never grow
    without bound."""
    whole = f"{run_id}.{step_key}"
    if len(whole) <= MAX_NAME:
        return whole
    digest = hashlib.sha256(whole.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{whole[: MAX_NAME - 36]}...#{digest}"
