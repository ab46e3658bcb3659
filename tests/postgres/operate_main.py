"""A process that retries or cancels many runs at a given moment, for the races in
test_operate_races.py: ``python operate_main.py URL ACTION AT RUN_ID...``.

Prints one line per run: ``ok <id>`` or ``refused <id>``.
"""

from __future__ import annotations

import os
import sys
import time

import tarry
from tarry.errors import RunStateError


def main() -> None:
    url, action, at, *run_ids = sys.argv[1:]
    app = tarry.App(url)
    app.get_run_sync(run_ids[0])  # connected before the start line
    time.sleep(max(0.0, float(at) - time.time()))
    for run_id in run_ids:
        try:
            if action == "retry":
                app.retry_sync(run_id, by=f"pid-{os.getpid()}")
            else:
                app.cancel_sync(run_id, "raced")
            print("ok", run_id, flush=True)
        except RunStateError:
            print("refused", run_id, flush=True)
    app.close_sync()


if __name__ == "__main__":
    main()
