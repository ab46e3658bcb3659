"""Local: the runs executing in this process and the callbacks waiting for runs to end."""

from __future__ import annotations

import asyncio

from tarry.local import Local
from tarry.store.base import Lease, RunRow


def test_a_cancel_reaches_an_execution_registered_before_or_after_it() -> None:
    local = Local()
    heard: list[str] = []
    forget = local.executing("r1", lambda: heard.append("before"))
    local.cancel("r1")
    assert heard == ["before"]
    # An execution whose claim committed before the cancel but that registers after it
    # (the window between the claim and the registration) still hears it, at once.
    local.executing("r1", lambda: heard.append("after"))
    assert heard == ["before", "after"]
    forget()
    local.cancel("r1")
    assert heard == ["before", "after", "after"]


def test_a_cancel_of_another_run_is_not_heard() -> None:
    local = Local()
    heard: list[str] = []
    local.executing("r1", lambda: heard.append("r1"))
    local.cancel("r2")
    assert heard == []


def test_an_end_forgets_the_cancel() -> None:
    local = Local()
    local.cancel("r1")
    local.ended("r1")
    heard: list[str] = []
    local.executing("r1", lambda: heard.append("r1"))
    assert heard == []


def test_end_callbacks_stay_until_removed_and_each_removes_only_itself() -> None:
    local = Local()
    calls: list[str] = []
    remove_a = local.on_end("r1", lambda: calls.append("a"))
    remove_b = local.on_end("r1", lambda: calls.append("b"))
    assert local.watching("r1") == 2
    local.ended("r1")
    local.ended("r1")
    assert calls == ["a", "b", "a", "b"]
    remove_a()
    remove_a()  # twice is harmless
    assert local.watching("r1") == 1
    local.ended("r1")
    assert calls[-1] == "b" and len(calls) == 5
    remove_b()
    assert local.watching("r1") == 0


def test_remembered_cancels_are_bounded() -> None:
    local = Local()
    for i in range(5000):
        local.cancel(f"r{i}")
    heard: list[str] = []
    local.executing("r0", lambda: heard.append("old"))
    local.executing("r4999", lambda: heard.append("new"))
    assert heard == ["new"]


class _Taker:
    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop

    def take(self, run_id: str, workflow: str) -> Lease | None:
        return None

    def adopt(self, run: RunRow | None, lease: Lease) -> None:
        """Nothing to adopt."""


def test_a_start_is_offered_only_to_a_worker_on_the_starting_loop() -> None:
    local = Local()
    here, there = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        worker = _Taker(here)
        local.add_taker(worker)
        local.add_taker(_Taker(None))  # not running yet
        assert local.taker(here) is worker
        assert local.taker(there) is None  # a start from another thread's loop queues
        local.remove_taker(worker)
        assert local.taker(here) is None
        local.remove_taker(worker)  # twice: harmless
    finally:
        here.close()
        there.close()
