"""``tarry serve`` and ``tarry dev`` as real processes, driven over HTTP."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from .conftest import TARGET, Tarry, free_port, read_line

pytestmark = pytest.mark.slow


def wait_status(http: httpx.Client, run_id: str, status: str, **kw: Any) -> Any:
    give_up = time.monotonic() + 20
    while True:
        run = http.get(f"/api/v1/runs/{run_id}", **kw).json()
        if run["status"] == status:
            return run
        assert time.monotonic() < give_up, run
        time.sleep(0.05)


def test_serve_runs_api_dashboard_and_worker(tarry: Tarry) -> None:
    port = free_port()
    proc = tarry.spawn("serve", TARGET, "--port", str(port), env={"TARRY_API_TOKEN": "t0k"})
    line = read_line(proc, "dashboard at")
    assert f"http://127.0.0.1:{port}/" in line and "token required" in line
    auth = {"authorization": "Bearer t0k"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        give_up = time.monotonic() + 20
        while True:
            try:
                if http.get("/api/v1/openapi.json").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < give_up, "the server did not come up"
            time.sleep(0.1)
        assert http.get("/api/v1/runs").status_code == 401
        started = http.post(
            "/api/v1/runs", json={"workflow": "approval", "payload": {"order": "s1"}}, headers=auth
        )
        assert started.status_code == 201
        run_id = started.json()["run_id"]
        parked = wait_status(http, run_id, "waiting", headers=auth)
        assert parked["waiting_for"]["key"] == "approval:s1"
        sent = http.post(
            "/api/v1/signals",
            json={"signal": "approval:s1", "data": {"approved": True, "by": "http"}},
            headers=auth,
        )
        assert sent.json() == {"status": "delivered", "run_id": run_id}
        done = wait_status(http, run_id, "completed", headers=auth)
        assert done["output"] == {"approved_by": "http"}
        assert http.get("/").status_code == 303  # the dashboard asks for the token
        bad = http.post(
            "/api/v1/signals", content=b"{", headers={**auth, "content-type": "application/json"}
        )
        assert bad.status_code == 400
    # the CLI sees the same store
    assert tarry.json("run", run_id)["status"] == "completed"
    proc.terminate()
    assert proc.wait(15) == 0


def test_dev_prints_the_dashboard_url(tarry: Tarry) -> None:
    proc = tarry.spawn("dev", TARGET, "--port", "0")
    line = read_line(proc, "dashboard at")
    url = line.split("dashboard at ", 1)[1].split()[0]
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
    with httpx.Client(timeout=10) as http:
        page = http.get(url)
        assert page.status_code == 200 and "<title>Runs" in page.text
    proc.terminate()
    assert proc.wait(15) == 0
