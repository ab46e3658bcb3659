"""A ``tarry serve`` / ``tarry worker`` target: the test workflows and those parked on
several things at once, on $TARRY_DATABASE_URL."""

from __future__ import annotations

from flows import FAST, register
from parallel_flows import register_parallel

import tarry

app = register_parallel(register(tarry.App(**FAST)))
