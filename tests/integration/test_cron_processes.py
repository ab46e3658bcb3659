"""Four worker processes share one store and one moving clock, on both stores: a
cron every minute for 10 minutes starts exactly 10 runs, one per slot, never two.

The workers' clocks follow a file the test writes (``cron_proc.py``), so all four
wake at each slot at once and race to start it, and ten minutes take a few
seconds. The slot is in the run's id: whichever worker commits first creates the
run, the others find it. The ledger shows every attempt and every execution.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import pytest

import tarry

from helpers import stop_processes

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("cron_proc.py")
T0 = datetime(2030, 1, 1, tzinfo=UTC)
PROCESSES = 4


class CronWorkers:
    def __init__(self, database_url: str, tmp_path: Path) -> None:
        self.database_url = database_url
        self.ledger = tmp_path / "ledger.txt"
        self.ledger.touch()
        self.clock = tmp_path / "clock.txt"
        self.set_time(T0)
        self.tmp_path = tmp_path
        self.procs: list[tuple[subprocess.Popen[bytes], IO[bytes], Path]] = []

    def set_time(self, when: datetime) -> None:
        staged = self.clock.with_suffix(".tmp")
        staged.write_text(repr(when.timestamp()))
        os.replace(staged, self.clock)  # every reader sees the old time or the new

    def spawn(self) -> None:
        log = self.tmp_path / f"worker-{len(self.procs)}.log"
        out = log.open("wb")
        cmd = [sys.executable, str(WORKER), "--db", self.database_url]
        cmd += ["--ledger", str(self.ledger), "--clock", str(self.clock)]
        self.procs.append((subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT), out, log))

    def lines(self, kind: str) -> list[list[str]]:
        return [
            line.split()[1:]
            for line in self.ledger.read_text().splitlines()
            if line.split()[0] == kind
        ]

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}:\n{log.read_text()}" for _, _, log in self.procs)

    def close(self) -> None:
        stop_processes(self.procs)


@pytest.fixture
def cron_workers(database_url: str, tmp_path: Path) -> Iterator[CronWorkers]:
    workers = CronWorkers(database_url, tmp_path)
    try:
        yield workers
    finally:
        workers.close()


def wait_for(what: str, check: object, workers: CronWorkers, timeout: float = 30) -> None:
    give_up = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > give_up:
            raise AssertionError(f"{what} did not happen within {timeout} s\n{workers.logs()}")
        time.sleep(0.01)


def slot_id(minute: int) -> str:
    return f"cron:tick:{(T0 + timedelta(minutes=minute)).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def test_four_worker_processes_start_each_slot_of_ten_minutes_exactly_once(
    cron_workers: CronWorkers, database_url: str
) -> None:
    for _ in range(PROCESSES):
        cron_workers.spawn()
    reader = tarry.App(database_url)
    try:
        wait_for(
            "four workers ready",
            lambda: len(cron_workers.lines("ready")) == PROCESSES,
            cron_workers,
            timeout=60,
        )

        def completed(minute: int) -> bool:
            try:
                return reader.get_run_sync(slot_id(minute)).status == "completed"
            except tarry.RunNotFound:
                return False

        time.sleep(0.3)  # each has looked at the schedule once: it is covered from T0
        for minute in range(1, 11):
            cron_workers.set_time(T0 + timedelta(minutes=minute))
            wait_for(f"the run of minute {minute}", lambda m=minute: completed(m), cron_workers)
        time.sleep(0.3)  # any late second start of a slot would show now
        runs = reader.list_runs_sync(workflow="tick", limit=100).items
    finally:
        reader.close_sync()
    cron_workers.close()

    expected = [slot_id(minute) for minute in range(1, 11)]
    assert sorted(run.id for run in runs) == expected
    assert all(run.status == "completed" for run in runs)
    assert sorted(run.output for run in runs) == [s.split(":", 2)[2] for s in expected]
    ran = cron_workers.lines("ran")
    assert sorted(run_id for run_id, _ in ran) == expected  # each step ran once, in one process
    # Every attempt to start a slot is in the ledger; exactly one per slot created it.
    created = collections.Counter(
        run_id for _, made, _ in cron_workers.lines("start") for run_id in made.split(",")
    )
    del created["-"]
    assert created == dict.fromkeys(expected, 1)
    tried = collections.Counter(
        run_id for tried, _, _ in cron_workers.lines("start") for run_id in tried.split(",")
    )
    del tried["-"]
    assert set(tried) == set(expected)
    # The race is real: the workers woke together, and some slots were tried by several.
    assert max(tried.values()) >= 2, f"no slot was raced for: {tried}"
    creators = {pid for _, made, pid in cron_workers.lines("start") if made != "-"}
    print(f"attempts per slot: {sorted(tried.values())}; created by {len(creators)} processes")
