"""Operating runs over /api/v1: retry, fork, cascading cancel and the bulk forms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

import tarry

from .conftest import wait_run
from .test_api import assert_error, start


async def failed_run(client: httpx.AsyncClient, gate: Path, **kw: Any) -> str:
    """A run of "fragile" that failed at "charge" (twice) because ``gate`` is missing."""
    run_id = await start(client, "fragile", {"gate": str(gate)}, **kw)
    await wait_run(client, run_id, "failed", **kw)
    return run_id


async def parked(client: httpx.AsyncClient, order: str) -> str:
    run_id = await start(client, "approval", {"order": order})
    await wait_run(client, run_id, "waiting")
    return run_id


def step_of(run: dict[str, Any], step_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in run["steps"] if s["id"] == step_id)
    return found


# -- failed attempts, changes, forked_from in a run's JSON ----------------------------------


async def test_a_failed_run_shows_every_failed_attempt(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    run_id = await failed_run(client, tmp_path / "gate")
    run = (await client.get(f"/api/v1/runs/{run_id}")).json()
    assert "is closed" in run["error"]["message"] and run["error"]["step"] == "charge"
    assert "Traceback" in run["error"]["traceback"]
    charge = step_of(run, "charge")
    assert [a["attempt"] for a in charge["failed_attempts"]] == [1, 2]
    for attempt in charge["failed_attempts"]:
        assert attempt["step"] == "charge"
        assert attempt["error"]["type"] == "ConnectionError"
        assert "is closed" in attempt["error"]["message"]
        assert attempt["error"]["traceback"].startswith("Traceback")
        assert attempt["started_at"] and attempt["ended_at"]
    assert run["failed_attempts"] == charge["failed_attempts"]
    assert step_of(run, "prepare")["failed_attempts"] == []
    assert run["changes"] == [] and run["forked_from"] is None
    listed = (await client.get("/api/v1/runs", params={"status": "failed"})).json()["items"]
    assert [r["id"] for r in listed] == [run_id]
    assert listed[0]["failed_attempts"] is None and listed[0]["changes"] is None


# -- POST /runs/{id}/retry ------------------------------------------------------------------


async def test_retry_a_failed_run_once_its_cause_is_fixed(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run_id = await failed_run(client, gate)
    gate.touch()  # the fix
    response = await client.post(f"/api/v1/runs/{run_id}/retry", json={"by": "alice"})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == run_id
    assert response.json()["status"] in ("queued", "running", "completed")
    run = await wait_run(client, run_id, "completed")
    assert run["output"] == {"charged": "charged"}
    assert [(c["action"], c["detail"]["by"]) for c in run["changes"]] == [("retried", "alice")]
    assert len(step_of(run, "charge")["failed_attempts"]) == 2  # the history stays
    # a completed run is not retried: fork it instead
    again = await client.post(f"/api/v1/runs/{run_id}/retry")
    assert "fork it" in assert_error(again, 409, "RunStateError")


async def test_retry_a_cancelled_run_without_a_body(client: httpx.AsyncClient) -> None:
    run_id = await parked(client, "retry-c")
    await client.post(f"/api/v1/runs/{run_id}/cancel", json={"reason": "oops"})
    response = await client.post(f"/api/v1/runs/{run_id}/retry")
    assert response.status_code == 200, response.text
    run = await wait_run(client, run_id, "waiting")
    assert run["changes"][0]["action"] == "retried" and run["changes"][0]["detail"]["by"] is None


async def test_retry_errors(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/api/v1/runs/missing/retry"), 404, "RunNotFound")
    run_id = await parked(client, "retry-e")
    refused = await client.post(f"/api/v1/runs/{run_id}/retry", json={})
    assert "is waiting" in assert_error(refused, 409, "RunStateError")
    for body in ({"by": 5}, {"by": "x" * 257}, {"surprise": 1}, [], "alice"):
        assert_error(await client.post(f"/api/v1/runs/{run_id}/retry", json=body), 422)
    assert (await wait_run(client, run_id, "waiting"))["changes"] == []


# -- POST /runs/{id}/fork -------------------------------------------------------------------


async def test_fork_from_a_step(client: httpx.AsyncClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    original = await start(client, "fragile", {"gate": str(gate)})
    await wait_run(client, original, "completed")
    response = await client.post(
        f"/api/v1/runs/{original}/fork", json={"from_step": "charge", "by": "bob"}
    )
    assert response.status_code == 201, response.text
    forked = response.json()["run_id"]
    assert forked != original
    run = await wait_run(client, forked, "completed")
    assert run["forked_from"] == {"run_id": original, "step": "charge"}
    assert run["changes"][0]["action"] == "forked"
    assert run["changes"][0]["detail"]["by"] == "bob"
    assert run["payload"] == {"gate": str(gate)}
    # its own id and payload
    named = await client.post(
        f"/api/v1/runs/{original}/fork",
        json={"from_step": "prepare", "run_id": "fork-2", "payload": {"gate": "/nowhere"}},
    )
    assert named.status_code == 201 and named.json() == {"run_id": "fork-2"}
    assert (await wait_run(client, "fork-2", "failed"))["payload"] == {"gate": "/nowhere"}
    taken = await client.post(
        f"/api/v1/runs/{original}/fork", json={"from_step": "prepare", "run_id": "fork-2"}
    )
    assert "exists already" in assert_error(taken, 400)


async def test_fork_errors(client: httpx.AsyncClient) -> None:
    quick = await start(client, "quick", {"n": 1})
    await wait_run(client, quick, "completed")
    unknown = await client.post(f"/api/v1/runs/{quick}/fork", json={"from_step": "nope"})
    message = assert_error(unknown, 400)
    assert "'nope'" in message and "['echo']" in message
    missing = await client.post("/api/v1/runs/missing/fork", json={"from_step": "echo"})
    assert_error(missing, 404, "RunNotFound")
    live = await parked(client, "fork-live")
    refused = await client.post(f"/api/v1/runs/{live}/fork", json={"from_step": "prepare"})
    assert "only an ended run" in assert_error(refused, 409, "RunStateError")
    for body in (
        {},
        {"from_step": ""},
        {"from_step": 3},
        {"from_step": "echo", "run_id": ""},
        {"from_step": "echo", "extra": 1},
        ["echo"],
    ):
        assert_error(await client.post(f"/api/v1/runs/{quick}/fork", json=body), 422)


# -- POST /runs/{id}/cancel: children -------------------------------------------------------


async def test_cancel_cascades_to_invoked_runs_unless_told_not_to(
    client: httpx.AsyncClient,
) -> None:
    alone = await start(client, "parent", {"order": "kid-1"})
    await wait_run(client, alone, "waiting")
    await wait_run(client, f"{alone}.child", "waiting")
    response = await client.post(f"/api/v1/runs/{alone}/cancel", json={"children": False})
    assert response.json()["status"] == "cancelled"
    assert (await wait_run(client, f"{alone}.child", "waiting"))["status"] == "waiting"

    family = await start(client, "parent", {"order": "kid-2"})
    await wait_run(client, family, "waiting")  # parked on its child, which exists now
    await wait_run(client, f"{family}.child", "waiting")
    assert (await client.post(f"/api/v1/runs/{family}/cancel")).status_code == 200
    await wait_run(client, f"{family}.child", "cancelled")
    bad = await client.post(f"/api/v1/runs/{family}/cancel", json={"children": "no"})
    assert_error(bad, 422)


# -- bulk -----------------------------------------------------------------------------------


async def test_bulk_retry_dry_run_changes_nothing_then_retries(
    client: httpx.AsyncClient, tmp_path: Path, tarry_app: tarry.App
) -> None:
    gate = tmp_path / "gate"
    failed = [await failed_run(client, gate) for _ in range(2)]
    waiting = await parked(client, "bulk-1")
    dry = await client.post("/api/v1/runs/retry", json={"status": "failed", "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json() == {"matched": 2, "done": [], "skipped": {}, "dry_run": True}
    for run_id in failed:
        assert (await wait_run(client, run_id, "failed"))["changes"] == []
    window = {"workflow": "fragile", "since": "1h", "until": "2099-01-01T00:00:00Z"}
    assert (await client.post("/api/v1/runs/retry", json={**window, "dry_run": True})).json()[
        "matched"
    ] == 2
    none = {"workflow": "fragile", "until": "1h", "dry_run": True}
    assert (await client.post("/api/v1/runs/retry", json=none)).json()["matched"] == 0

    gate.touch()
    done = await client.post("/api/v1/runs/retry", json={"workflow": "fragile", "by": "ops"})
    assert done.status_code == 200, done.text
    assert done.json()["matched"] == 2 and sorted(done.json()["done"]) == sorted(failed)
    for run_id in failed:
        run = await wait_run(client, run_id, "completed")
        assert run["changes"][0]["detail"]["by"] == "ops"
    assert (await tarry_app.get_run(waiting)).status == "waiting"


async def test_bulk_cancel_and_fork(client: httpx.AsyncClient) -> None:
    runs = [await parked(client, f"bulk-c{n}") for n in range(2)]
    quick = await start(client, "quick", {"n": 1})
    await wait_run(client, quick, "completed")
    dry = await client.post("/api/v1/runs/cancel", json={"workflow": "approval", "dry_run": True})
    assert dry.json()["matched"] == 2
    cancelled = await client.post(
        "/api/v1/runs/cancel", json={"workflow": "approval", "reason": "closing down"}
    )
    assert sorted(cancelled.json()["done"]) == sorted(runs)
    for run_id in runs:
        run = await wait_run(client, run_id, "cancelled")
        assert run["error"]["message"] == "closing down"

    forked = await client.post("/api/v1/runs/fork", json={"from_step": "echo", "workflow": "quick"})
    assert forked.status_code == 200, forked.text
    [new] = forked.json()["done"]
    assert (await wait_run(client, new, "completed"))["forked_from"] == {
        "run_id": quick,
        "step": "echo",
    }
    # a run that never recorded the step is skipped, saying why
    skipped = await client.post(
        "/api/v1/runs/fork", json={"from_step": "echo", "workflow": "approval"}
    )
    assert skipped.json()["done"] == [] and set(skipped.json()["skipped"]) == set(runs)
    assert "recorded no step 'echo'" in skipped.json()["skipped"][runs[0]]


@pytest.mark.parametrize("path", ["/api/v1/runs/retry", "/api/v1/runs/cancel"])
async def test_a_bulk_call_without_a_filter_is_refused(
    client: httpx.AsyncClient, path: str
) -> None:
    run_id = await parked(client, f"bulk-all-{path[-5:]}")
    for body in ({}, {"dry_run": True}, {"workflow": None}, {"all": False}):
        message = assert_error(await client.post(path, json=body), 400, "FilterRequired")
        assert '"all": true' in message
    every = await client.post(path, json={"all": True, "dry_run": True})
    assert every.status_code == 200 and every.json()["dry_run"] is True
    assert (await wait_run(client, run_id, "waiting"))["status"] == "waiting"


async def test_a_bulk_fork_without_a_filter_is_refused(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/api/v1/runs/fork", json={"from_step": "s"}), 400)
    every = await client.post(
        "/api/v1/runs/fork", json={"from_step": "s", "all": True, "dry_run": True}
    )
    assert every.json() == {"matched": 0, "done": [], "skipped": {}, "dry_run": True}


@pytest.mark.parametrize(
    "body",
    [
        {"status": "sleeping"},
        {"since": "yesterday"},
        {"since": "2025-01-01T00:00:00"},  # naive
        {"until": "2025-02-30T00:00:00Z"},
        {"since": 86400},
        {"workflow": ""},
        {"workflow": "x", "dry_run": "yes"},
        {"all": 1},
        {"workflow": "x", "surprise": True},
    ],
)
async def test_bulk_bad_bodies_are_422(client: httpx.AsyncClient, body: Any) -> None:
    assert_error(await client.post("/api/v1/runs/retry", json=body), 422, "ValidationError")


async def test_bulk_fork_needs_a_step(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/api/v1/runs/fork", json={"all": True}), 422)
    bad = await client.post("/api/v1/runs/cancel", json={"all": True, "from_step": "x"})
    assert_error(bad, 422)


async def test_the_bulk_paths_and_run_ids_that_look_like_them(client: httpx.AsyncClient) -> None:
    refused = await client.delete("/api/v1/runs/retry")
    assert_error(refused, 405, "MethodNotAllowed")
    assert refused.headers["allow"] == "POST"
    # a run may still be called "retry": GET reads it, POST .../retry retries it
    assert_error(await client.get("/api/v1/runs/retry"), 404, "RunNotFound")
    response = await client.post("/api/v1/runs", json={"workflow": "quick", "run_id": "retry"})
    assert response.status_code == 201
    await wait_run(client, "retry", "completed")
    again = await client.post("/api/v1/runs/retry/retry")
    assert "'retry' is completed" in assert_error(again, 409, "RunStateError")
