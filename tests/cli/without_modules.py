"""Run the ``tarry`` command as in an install that lacks some packages.

``python without_modules.py fastapi,uvicorn serve target.py`` hides those top-level
packages from imports (as if not installed), then runs the CLI with the rest of
the arguments: how the tests see what a library install without the extras says.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType


class Hide(MetaPathFinder):
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


if __name__ == "__main__":
    hidden = set(sys.argv[1].split(","))
    for name in list(sys.modules):
        if name.partition(".")[0] in hidden:
            del sys.modules[name]
    sys.meta_path.insert(0, Hide(hidden))
    sys.argv = ["tarry", *sys.argv[2:]]
    from tarry.cli import main

    main()
