"""The README's whole-program examples run as printed, and print what they say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def first_program_under(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading) :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, heading
    return found.group(1)


@pytest.mark.parametrize(
    ("heading", "printed"),
    [
        ("## A workflow", "{'shipped': 42}"),
        ("### Plain `def` handlers", "{'words': 3, 'by': 'alice'}"),
    ],
)
def test_readme_program_runs(tmp_path: Path, heading: str, printed: str) -> None:
    program = first_program_under(heading)
    assert f"# {printed}" in program  # the comment says what it prints
    (tmp_path / "example.py").write_text(program)
    done = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == printed
