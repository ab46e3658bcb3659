"""The garbage collector of a process tarry's CLI owns: ``tarry worker``, ``serve``, ``dev``.

Python's cyclic collector is set for short programs: a young pass every 700 container
objects allocated and not yet freed, and every hundred young passes a full one over
everything alive. A worker allocates a few dozen containers per run and frees nearly
all of them by reference counting (an ended run leaves no cycle:
``tests/behaviour/test_garbage.py``), so those passes find next to nothing. Yet on the
dev machine they took 20-56 us of CPU per 3-step run in a ``tarry worker``, and every
full pass walked each module, class and function imported, with the event loop
stopped for up to 16 ms (concurrency 128) or 53 ms (1,000) (``bench/worker_gc.py``).

``tuned``, the default, once the App (and for ``serve`` and ``dev`` the API and the
dashboard) is loaded: what is alive then (the imported code, the App, the server) is
frozen, out of every later pass (``gc.freeze``), and a young pass
comes every 10,000 containers instead of 700. Cyclic garbage is still collected; up
to that many container objects of it wait for a pass rather than 700. ``python``
leaves Python's settings as they are, for an application that sets its own.

A library does not change a process-wide setting: ``App.worker()`` in an application's
own process leaves the collector alone (the README gives the calls to make there).
"""

from __future__ import annotations

import gc
from typing import Literal

GcMode = Literal["tuned", "python"]
GC_MODES: tuple[GcMode, ...] = ("tuned", "python")
YOUNG_THRESHOLD = 10_000
"""Container objects allocated and not yet freed between two young passes (Python: 700)."""


def parse_gc_mode(value: str) -> GcMode:
    """``value`` as a mode; a ValueError that names the choices otherwise."""
    given = value.strip().lower()
    for mode in GC_MODES:
        if given == mode:
            return mode
    raise ValueError(
        f"--gc must be 'tuned' or 'python', not {value!r}: 'tuned' (the default) freezes "
        "what the App loaded and collects young objects less often; 'python' leaves "
        "Python's collector as it is"
    )


def tune_gc(mode: GcMode) -> None:
    """Set the process's collector for a long-running worker (``mode`` 'tuned'), or
    leave it (``'python'``). Call once, after the App is loaded and before it runs."""
    if mode == "python":
        return
    gc.collect()  # garbage left by the imports is freed, not frozen for good
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
