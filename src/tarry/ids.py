"""Identifiers: time-ordered (48-bit milliseconds first), then random."""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """32 hex characters that sort by creation time across processes."""
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"
