"""Telling the workers of other processes that a slot a cap or a key held is free.

A claim of a workflow with a concurrency cap or a concurrency key leaves its due runs
queued while the slot is taken, and its worker then sleeps until a run ends, which
it hears of at once in its own process (the end wakes its loop). A run that ends in
another process makes no sound there: on SQLite every commit is noticed anyway, but
on PostgreSQL only a NOTIFY wakes a listener, and ending a run sends none. So when a
run of such a workflow stops executing here (ended, parked, retrying, stopped), the
worker asks the store to wake the others, at most one ask in flight: ends that come
while one is on its way make one more, not one each.
"""

from __future__ import annotations

import asyncio
import contextlib

from .errors import StoreError
from .store.base import Store


class SlotWake:
    """The asks of one worker (see the module); ``freed`` from its event loop."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._sending: asyncio.Task[None] | None = None
        self._again = False

    def freed(self) -> None:
        """A run of a capped or keyed workflow stopped executing here."""
        if self._sending is not None:
            self._again = True
            return
        self._sending = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        try:
            while True:
                self._again = False
                with contextlib.suppress(StoreError):  # at worst, the others wait for a lease
                    await self.store.wake_others()
                if not self._again:
                    return
        finally:
            self._sending = None

    async def close(self) -> None:
        task = self._sending
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
