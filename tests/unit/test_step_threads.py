"""StepThreads: sync step functions on threads, results handed back once per batch."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tarry.step_threads import StepThreads


async def test_results_and_errors_come_back_to_the_caller() -> None:
    threads = StepThreads(4, "test-step")
    try:
        assert await threads.call(lambda: 41 + 1) == 42
        with pytest.raises(ZeroDivisionError):
            await threads.call(lambda: 1 / 0)

        def stop() -> None:
            raise StopIteration("no")

        with pytest.raises(RuntimeError, match="StopIteration"):
            await threads.call(stop)
    finally:
        threads.shutdown()


async def test_a_slow_call_never_holds_up_a_quick_one_while_a_thread_is_free() -> None:
    threads = StepThreads(2, "test-step")
    release = threading.Event()
    try:
        slow = threads.call(lambda: release.wait(10))
        started = time.monotonic()
        assert await asyncio.wait_for(threads.call(lambda: "quick"), 5) == "quick"
        assert time.monotonic() - started < 2
        release.set()
        assert await slow is True
    finally:
        release.set()
        threads.shutdown()


async def test_many_calls_share_the_threads_and_all_answer() -> None:
    threads = StepThreads(3, "test-step")
    seen: set[str] = set()

    def work(i: int) -> int:
        seen.add(threading.current_thread().name)
        time.sleep(0.001)
        return i * 2

    try:
        results = await asyncio.gather(*(threads.call(lambda i=i: work(i)) for i in range(200)))
        assert results == [i * 2 for i in range(200)]
        assert 1 <= len(seen) <= 3
    finally:
        threads.shutdown()


async def test_shutdown_drops_calls_not_yet_started() -> None:
    threads = StepThreads(1, "test-step")
    release = threading.Event()
    running = threads.call(lambda: release.wait(10))
    waiting = threads.call(lambda: "never")
    await asyncio.sleep(0.05)
    threads.shutdown(wait=False, cancel_futures=True)
    release.set()
    assert await running is True
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(RuntimeError, match="shut down"):
        threads.call(lambda: 1)


def test_the_executor_interface_runs_a_function() -> None:
    threads = StepThreads(2, "test-step")
    try:
        assert threads.submit(pow, 2, 10).result(timeout=5) == 1024
    finally:
        threads.shutdown()


async def test_calls_that_block_each_get_a_thread() -> None:
    """Past the few threads quick calls share, calls that block (I/O, a sleep) are
    seen stalled and each gets a thread of its own: 40 calls of 0.5 s on 40 threads
    end together, where two threads would take 10 s."""
    threads = StepThreads(40, "test-step")
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(threads.call(lambda i=i: time.sleep(0.5) or i) for i in range(40))
        )
        assert results == list(range(40))
        assert time.monotonic() - started < 4
    finally:
        threads.shutdown()


async def test_quick_calls_are_taken_by_a_few_threads() -> None:
    """Quick calls do not wake a thread each: the threads at work take them one after
    another (a thread per call costs more than the call)."""
    threads = StepThreads(64, "test-step")
    seen: set[str] = set()

    def quick(i: int) -> int:
        seen.add(threading.current_thread().name)
        return i

    try:
        for _ in range(5):
            got = await asyncio.gather(*(threads.call(lambda i=i: quick(i)) for i in range(100)))
            assert got == list(range(100))
        assert len(seen) <= 16  # 64 threads, one per call, before
    finally:
        threads.shutdown()
