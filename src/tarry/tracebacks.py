"""Tracebacks kept with failed attempts and failed runs, bounded in size.

A traceback is what a person debugging a failed run needs first, so every
failed attempt keeps one. It is capped (16 KiB by default) so that a deep
recursion cannot bloat the store: when it must cut, the frames of tarry, asyncio
and the thread pool go first, then the middle of what is left, so the top
(where the step was called) and the bottom (where it raised) survive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import traceback

LIMIT = 16 * 1024
"""Characters of traceback kept per failed attempt or run."""

_PLUMBING = (
    *(os.path.dirname(os.path.abspath(m.__file__ or "")) for m in (asyncio, concurrent.futures)),
    os.path.dirname(os.path.abspath(__file__)),
    os.path.abspath(threading.__file__ or ""),
)


def format_bounded(exc: BaseException, limit: int = LIMIT) -> str:
    """``exc``'s traceback (with its causes), at most ``limit`` characters."""
    full = "".join(traceback.format_exception(exc))
    if len(full) <= limit:
        return full
    kept = traceback.TracebackException.from_exception(exc)
    _drop_plumbing(kept)
    text = "".join(kept.format())
    if len(text) <= limit:
        return text
    note = "\n  ... {} characters cut ...\n"
    head = limit // 4
    tail = limit - head - len(note.format(len(text)))
    return text[:head] + note.format(len(text) - head - tail) + text[-tail:]


def _drop_plumbing(tb: traceback.TracebackException) -> None:
    seen: set[int] = set()
    current: traceback.TracebackException | None = tb
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = [f for f in current.stack if not f.filename.startswith(_PLUMBING)]
        current.stack = traceback.StackSummary.from_list(frames)
        current = current.__cause__ or current.__context__
