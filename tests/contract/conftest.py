"""The contract suite's store, on a clock that moves only when a test moves it.

Leases, deadlines, retry times, signal retention and the event dedupe window
are all read from the store's clock, so a test lets one pass with
``clock.advance(...)`` instead of sleeping, and checks "not yet" before it
moves the clock knowing that nothing moves by itself. A ``ManualClock`` is
used as is by both stores (the PostgreSQL store follows its server's clock
only when given a ``SystemClock``), so these tests are deterministic on both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tarry.clock import ManualClock
from tarry.store import open_store
from tarry.store.base import Store


@pytest.fixture
def clock() -> ManualClock:
    """The test's clock, started at the wall clock's now. A second store a test opens
    on the same database must get it too whenever times are compared across them."""
    return ManualClock()


@pytest.fixture
async def store(database_url: str, clock: ManualClock) -> AsyncIterator[Store]:
    s = open_store(database_url, clock=clock)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
