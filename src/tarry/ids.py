"""Identifiers: time-ordered (48-bit milliseconds first), then random.

The random part comes from the OS's generator, read 4 KiB at a time: a read
releases the interpreter's lock, and on a busy worker every release can hand
the lock to another thread (the SQLite writer) for a whole switch interval, so
one read per run used to cost tens of microseconds. A child process made by
``fork`` reads its own bytes (the buffer is dropped in the child).
"""

from __future__ import annotations

import os
import threading

_CHUNK = 4096
_lock = threading.Lock()
_buffer = b""
_used = 0


def _forget_in_child() -> None:
    global _buffer, _used
    _buffer, _used = b"", 0


os.register_at_fork(after_in_child=_forget_in_child)


def random_hex(size: int) -> str:
    """``size`` bytes from the OS's generator, as hex."""
    global _buffer, _used
    with _lock:
        if _used + size > len(_buffer):
            _buffer, _used = os.urandom(_CHUNK), 0
        start, _used = _used, _used + size
        return _buffer[start:_used].hex()


def new_id(now: float) -> str:
    """32 hex characters that sort by ``now`` (the clock's time, epoch seconds) across
    processes, then at random."""
    return f"{int(now * 1000) & 0xFFFFFFFFFFFF:012x}{random_hex(10)}"
