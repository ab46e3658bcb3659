"""The poller of a SQLite store: noticing other processes' commits to its file.

It sleeps on an inotify watch of the database's files (``sqlite_watch``): a write by
any process wakes it at once, and it reads ``PRAGMA data_version`` (a cheap counter
read) every ``_SETTLE_STEP`` until the commit shows, for at most ``_SETTLE_FOR``.
Beside the watch, and instead of it where inotify cannot be had, it reads the
counter every ``poll_interval``. A mixin of ``GroupCommitWriter``, whose state (the
last commit of this process, the listeners) it reads.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable

from ..errors import ConfigError
from .base import WakeListener
from .sqlite_watch import FileWatch

_SETTLE_STEP = 0.0005
"""Seconds between ``data_version`` reads while a reported write has not yet shown."""
_SETTLE_FOR = 0.05
"""How long after a reported write its commit is looked for (a commit's fsync, a
checkpoint's writes that change nothing): past it, the poller waits for the next."""
_OWN_HOLD = 0.02
"""After a write of this process's own, the watch is not read for this long (then the
counter is, at once): a busy process is woken by its own commits at most
1 / _OWN_HOLD times a second, and another process's commit meanwhile reaches it that
much later at most."""


class CommitPoller:
    """The poller thread's loop, for the writer that mixes it in."""

    path: str
    poll_interval: float
    in_transaction: bool
    _watch_woke: float
    _watch: FileWatch | None
    watching: bool
    _closed: threading.Event
    _listeners: list[WakeListener]
    _connect: Callable[[], sqlite3.Connection]
    _check_file: Callable[[], None]
    wake: Callable[[], None]

    def _poller_main(self, ready: threading.Event) -> None:
        # The first reading is taken before open() returns, and readings go on while
        # nobody listens: a commit by another process is never folded into a baseline.
        try:
            conn = self._connect()
            last = conn.execute("PRAGMA data_version").fetchone()[0]
        except (ConfigError, sqlite3.Error):
            ready.set()
            return
        # Watched after that first reading, so a write before it is in the baseline.
        watch = self._watch = FileWatch.open([self.path, self.path + "-wal"])
        self.watching = watch is not None
        ready.set()
        expect_until = 0.0  # monotonic time until which a reported write may still show
        deferred = 0.0  # a wake held back (see below) is due then
        held_until = 0.0  # the watch is not read before then (see below)
        try:
            while True:
                hold = held_until - time.monotonic()
                if hold > 0 and self._closed.wait(hold):
                    break
                settling = expect_until > time.monotonic()
                timeout = _SETTLE_STEP if settling else self.poll_interval
                if held_until:
                    # The writes held back may hide another process's commit, whose
                    # event they took: the counter is read now, not a poll later.
                    held_until = 0.0
                    timeout = 0.0
                if deferred:
                    timeout = max(0.0, min(timeout, deferred - time.monotonic()))
                if watch is None:
                    if self._closed.wait(timeout):
                        break
                else:
                    if watch.wait(timeout):
                        now = time.monotonic()
                        # Any write but this process's own is settled on: another
                        # process's commit is reported at its write, before its fsync.
                        if not self.in_transaction:
                            expect_until = now + _SETTLE_FOR
                        else:
                            # While this process commits, its own writes would wake
                            # this thread after every commit: let them pile up (the
                            # kernel folds them into one event) for _OWN_HOLD.
                            held_until = now + _OWN_HOLD
                    if self._closed.is_set():
                        break
                self._check_file()
                try:
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error:
                    continue
                if version != last:
                    last = version
                    expect_until = 0.0
                    now = time.monotonic()
                    # A change seen while this process commits is its own, which woke
                    # its workers already: then wake them at most once per poll
                    # interval, not after every commit of a busy worker.
                    own = self.in_transaction
                    if not own or now - self._watch_woke >= _SETTLE_FOR:
                        deferred = 0.0
                        self._watch_woke = now
                        if self._listeners:
                            self.wake()
                    elif not deferred:  # held back, not dropped: it may be another's
                        deferred = self._watch_woke + _SETTLE_FOR
                if deferred and time.monotonic() >= deferred:
                    deferred = 0.0
                    self._watch_woke = time.monotonic()
                    if self._listeners:
                        self.wake()
        finally:
            conn.close()  # the watch is closed by close(), once this thread has ended
