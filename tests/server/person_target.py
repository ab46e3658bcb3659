"""A ``tarry serve`` target for the inbox's browser tests: the workflows that wait on
people with a schema (tests/server/person_flows.py), on $TARRY_DATABASE_URL."""

from __future__ import annotations

from flows import FAST
from person_flows import register_people

import tarry

app = register_people(tarry.App(**FAST))
