"""Identifiers: time-ordered (48-bit milliseconds first), then random."""

from __future__ import annotations

import os


def new_id(now: float) -> str:
    """32 hex characters that sort by ``now`` (the clock's time, epoch seconds) across
    processes, then at random."""
    return f"{int(now * 1000) & 0xFFFFFFFFFFFF:012x}{os.urandom(10).hex()}"
