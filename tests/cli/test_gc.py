"""``--gc``: the garbage collector of ``tarry worker``, ``serve`` and ``dev``."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest

from tarry.process_gc import YOUNG_THRESHOLD

from .conftest import Tarry, free_port, read_line

pytestmark = pytest.mark.slow

TARGET = str(Path(__file__).with_name("gc_target.py"))
PYTHONS = gc.get_threshold()[0]  # a fresh interpreter's, as this one started


def collector_of(tarry: Tarry, *args: str, env: dict[str, str] | None = None) -> Any:
    """What the worker process's collector is, as a run there reads it."""
    proc = tarry.spawn(*args, TARGET, env=env)
    read_line(proc, "tarry: worker" if args[0] == "worker" else "dashboard at")
    run_id = tarry.json("start", "collector")["run_id"]
    return tarry.wait_status(run_id, "completed")["output"]


def test_a_worker_freezes_what_it_loaded_and_collects_young_objects_less_often(
    tarry: Tarry,
) -> None:
    seen = collector_of(tarry, "worker")
    assert seen["young"] == YOUNG_THRESHOLD
    assert seen["frozen"] > 1000  # the imported code, out of every pass


@pytest.mark.parametrize("how", ["option", "env"])
def test_python_leaves_a_workers_collector_as_python_sets_it(tarry: Tarry, how: str) -> None:
    if how == "option":
        seen = collector_of(tarry, "worker", "--gc", "python")
    else:
        seen = collector_of(tarry, "worker", env={"TARRY_GC": "python"})
    assert seen == {"young": PYTHONS, "frozen": 0, "servers_scanned": 0}


def test_serve_freezes_its_server_with_the_app(tarry: Tarry) -> None:
    """``serve`` sets its collector once the API and dashboard are built too: their
    objects are frozen with the App's, out of every pass."""
    served = collector_of(tarry, "serve", "--port", str(free_port()))
    assert served["young"] == YOUNG_THRESHOLD and served["frozen"] > 1000
    assert served["servers_scanned"] == 0


def test_python_leaves_the_server_scanned(tarry: Tarry) -> None:
    served = collector_of(tarry, "serve", "--port", str(free_port()), "--gc", "python")
    assert served == {"young": PYTHONS, "frozen": 0, "servers_scanned": 1}


def test_a_bad_gc_is_refused_before_anything_is_made(tarry: Tarry) -> None:
    done = tarry("worker", TARGET, "--gc", "off")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "--gc must be 'tuned' or 'python', not 'off'" in done.stderr
    assert not (tarry.cwd / "tarry.db").exists()  # the fixture's store: never made
    assert "tarry: worker" not in done.stdout
