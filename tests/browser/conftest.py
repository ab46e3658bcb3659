"""The browser tests drive ``tarry serve`` with the CLI tests' process runner, in the
Chromium at /usr/bin/chromium (``apt-get install -y chromium``; ``.ci/run`` installs it)."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.conftest import tarry  # noqa: F401  (the fixture, shared)

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()
