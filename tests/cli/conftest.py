"""Run the real ``tarry`` entry point in subprocesses against a fresh SQLite file."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = str(ROOT / "tests" / "server" / "serve_target.py")


def tarry_command() -> list[str]:
    script = Path(sys.executable).parent / "tarry"
    if script.exists():
        return [str(script)]
    found = shutil.which("tarry")
    return [found] if found else [sys.executable, "-m", "tarry.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Tarry:
    """``tarry(*args)`` runs one command to completion; ``spawn`` starts a long-lived one."""

    def __init__(self, database_url: str, cwd: Path) -> None:
        self.env = {**os.environ, "TARRY_DATABASE_URL": database_url, "NO_COLOR": "1"}
        self.env.pop("TARRY_API_TOKEN", None)
        self.cwd = cwd
        self.spawned: list[subprocess.Popen[str]] = []

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return subprocess.run(
            [*tarry_command(), *args],
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, (done.stdout, done.stderr)  # --json errors are on stdout
        return json.loads(done.stdout)

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*tarry_command(), *args],
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.spawned.append(proc)
        return proc

    def wait_status(self, run_id: str, status: str, timeout: float = 20) -> Any:
        give_up = time.monotonic() + timeout
        while True:
            run = self.json("run", run_id)
            if run["status"] == status:
                return run
            assert time.monotonic() < give_up, f"run {run_id} still {run['status']}"
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.spawned:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.communicate(timeout=10)  # also closes the pipes
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def read_line(proc: subprocess.Popen[str], contains: str, timeout: float = 30) -> str:
    """The first stdout line of ``proc`` that contains ``contains``."""
    assert proc.stdout is not None
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        line = proc.stdout.readline()
        if contains in line:
            return line
        if not line and proc.poll() is not None:
            stderr = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"exited {proc.returncode} before {contains!r}: {stderr}")
    raise AssertionError(f"no line with {contains!r} within {timeout}s")


@pytest.fixture
def tarry(sqlite_url: str, tmp_path: Path) -> Iterator[Tarry]:
    runner = Tarry(sqlite_url, tmp_path)
    yield runner
    runner.stop()


@pytest.fixture
def worker(tarry: Tarry) -> subprocess.Popen[str]:
    proc = tarry.spawn("worker", TARGET)
    read_line(proc, "tarry: worker")
    return proc


Spawn = Callable[..., subprocess.Popen[str]]
