"""The browser tests drive ``tarry serve`` with the CLI tests' process runner."""

from cli.conftest import tarry  # noqa: F401  (the fixture, shared)
