"""A ``tarry serve`` / ``tarry worker`` target: the test workflows on $TARRY_DATABASE_URL."""

from __future__ import annotations

from flows import FAST, register

import tarry

app = register(tarry.App(**FAST))
