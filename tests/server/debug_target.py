"""A ``tarry serve`` target for the dashboard's browser tests: the server tests'
workflows and the debugging views' own (tests/server/debug_flows.py)."""

from __future__ import annotations

from debug_flows import register_debug
from flows import FAST, register

import tarry

app = register_debug(register(tarry.App(**FAST)))
