"""Other processes' writes to a SQLite file, reported as they happen (inotify).

A commit writes its pages with ``write()`` into the ``-wal`` file (the database
file itself in rollback-journal mode), and the kernel tells an inotify watch on
that file at once, whichever process wrote. A reported write only says a commit
has begun: it becomes visible to readers after its fsync, so the poller confirms
it with ``PRAGMA data_version`` and looks again shortly while it has not shown.

Linux only, through libc by ctypes (no dependency). Where inotify cannot be had
(another OS, the per-user instance limit reached, a file that cannot be
watched) ``FileWatch.open`` gives None and the poller polls ``data_version`` at
its interval, as it also does beside a watch, in case one misses a write.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import struct
from collections.abc import Sequence

IN_MODIFY = 0x00000002
IN_IGNORED = 0x00008000
"""The watch is gone (its file was deleted): watch the path again."""
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (of the name that follows)


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc


class FileWatch:
    """An inotify descriptor watching files for writes, and a pipe that interrupts
    a wait on it."""

    def __init__(self, libc: ctypes.CDLL, fd: int, paths: Sequence[str]) -> None:
        self._libc = libc
        self._fd = fd
        self._paths = list(paths)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    @classmethod
    def open(cls, paths: Sequence[str]) -> FileWatch | None:
        """A watch on those of ``paths`` that exist, or None if none can be watched."""
        libc = _libc()
        if libc is None:
            return None
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        watch = cls(libc, fd, paths)
        if not watch._add_watches():
            watch.close()
            return None
        return watch

    def _add_watches(self) -> bool:
        watched = False
        for path in self._paths:
            if self._libc.inotify_add_watch(self._fd, os.fsencode(path), IN_MODIFY) >= 0:
                watched = True
        return watched

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a write or ``interrupt``; True if a
        write was reported. Every event waiting is consumed."""
        ready, _, _ = select.select([self._fd, self._wake_r], [], [], timeout)
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 64)
        if self._fd not in ready:
            return False
        written = False
        while True:
            try:
                data = os.read(self._fd, 4096)
            except BlockingIOError:
                break
            offset = 0
            while offset + _EVENT.size <= len(data):
                _wd, mask, _cookie, size = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size + size
                if mask & IN_IGNORED:
                    self._add_watches()
                written = written or bool(mask & IN_MODIFY)
        return written

    def interrupt(self) -> None:
        """Make a ``wait`` in another thread return now; safe from any thread."""
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        for fd in (self._fd, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
