"""The pytest plugin tarry installs (entry point ``pytest11``): ``tarry_env``.

``tarry_env`` is an ``Environment`` for the App under test, entered for one
test and left after it. It works in synchronous tests (``env.start_sync``,
``env.advance_sync``, ...) and in async ones (``await env.advance("7d")``, with
pytest-asyncio), because the environment runs on a loop of its own.

The App under test comes from the ``tarry_app`` fixture: override it in a
``conftest.py``, or name the App in the pytest configuration::

    [tool.pytest.ini_options]
    tarry_app = "myproject.workflows:app"
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest

from ..app import App
from .environment import Environment


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "tarry_app",
        "the tarry.App under test as 'module:attribute', for the tarry_env fixture",
        default="",
    )


def load_app(spec: str) -> App:
    """Import ``module:attribute`` (default attribute ``app``) and return that App."""
    module_name, _, attr = spec.partition(":")
    try:
        found: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise pytest.UsageError(
            f"tarry_app = {spec!r}: cannot import {module_name!r}: {exc}"
        ) from None
    for part in (attr or "app").split("."):
        found = getattr(found, part, None)
    if not isinstance(found, App):
        raise pytest.UsageError(
            f"tarry_app = {spec!r} names a {type(found).__name__}, not a tarry.App"
        )
    return found


@pytest.fixture
def tarry_app(request: pytest.FixtureRequest) -> App:
    """The App whose workflows ``tarry_env`` runs: override this fixture, or set the
    ``tarry_app`` option."""
    spec = str(request.config.getini("tarry_app") or "")
    if not spec:
        raise pytest.UsageError(
            "tarry_env needs the App under test: define a fixture named `tarry_app` that "
            'returns it (in conftest.py), or set tarry_app = "module:app" in '
            "[tool.pytest.ini_options]"
        )
    return load_app(spec)


@pytest.fixture
def tarry_env(tarry_app: App) -> Iterator[Environment]:
    """A fresh ``tarry.testing.Environment`` for ``tarry_app``: in-memory store,
    virtual clock, a worker inside."""
    with Environment(tarry_app) as env:
        yield env
