"""The chaos run, CI-sized: four worker processes on one store, SIGKILLed at random
while 500 runs each take a signal, an event and a message (and, on PostgreSQL,
while the server restarts). See ``driver.py`` for what is checked.

``TARRY_CHAOS_RUNS`` and ``TARRY_CHAOS_SECONDS`` resize it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from chaos.driver import Config, run_chaos

pytestmark = pytest.mark.slow

RUNS = int(os.environ.get("TARRY_CHAOS_RUNS", "500"))
SECONDS = float(os.environ.get("TARRY_CHAOS_SECONDS", "45"))


@pytest.mark.timeout(SECONDS + 240)
async def test_nothing_acknowledged_is_lost_and_no_completed_step_runs_again(
    database_url: str, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    report = await run_chaos(
        Config(database_url, tmp_path, runs=RUNS, duration=SECONDS, settle=90.0, progress=True)
    )
    line = report.line()
    print(line)
    print(line, file=sys.stderr)
    record_property("chaos", line)
    assert report.kills > 0, line
    assert report.violations == [], f"{line}\n{report.details()}"
    assert (report.signals, report.events, report.messages) == (RUNS, RUNS, RUNS), line
