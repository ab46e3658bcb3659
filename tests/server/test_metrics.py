"""``/metrics`` on both stores: scraped, parsed with ``prometheus_client.parser``, and
every figure checked against the store (runs by status, parked runs by wait kind, the
oldest wait) or against what the runs did (steps, attempts, retries, claims, ends);
the collector in a registry of the user's own; the route behind the token as the API
is; and an install without the extra, which pays nothing and is told what to install.

This process's figures are counters for the whole process, so each test names its
workflows afresh and reads only their series.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import tarry
import tarry.metrics
from tarry.metrics.store_timing import OPERATIONS

from .conftest import TOKEN, asgi_client

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(client: httpx.AsyncClient, **kw: Any) -> Samples:
    response = await client.get("/metrics", **kw)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


async def scrape_until(
    client: httpx.AsyncClient, name: str, expected: float, timeout: float = 5
) -> Samples:
    """Scrape until ``name`` reads ``expected``; fail with what it read last."""
    give_up = time.monotonic() + timeout
    while True:
        samples = await scrape(client)
        if value(samples, name) == expected or time.monotonic() > give_up:
            assert value(samples, name) == expected
            return samples
        await asyncio.sleep(0.01)


def register_metered(app: tarry.App, prefix: str, gate: asyncio.Event) -> dict[str, str]:
    """Workflows whose runs end each way a figure counts, named under ``prefix``."""
    names = {k: f"{prefix}-{k}" for k in ("wait", "nap", "quick", "flaky", "doomed", "hold")}
    tries: dict[str, int] = {}

    @app.workflow(names["wait"])
    async def wait(ctx: tarry.Context, step: tarry.Step) -> Any:
        await step.run("prepare", lambda: 1)
        return await step.wait_for_signal("go", signal=f"go:{ctx.run_id}", timeout="1h")

    @app.workflow(names["nap"])
    async def nap(ctx: tarry.Context, step: tarry.Step) -> None:
        await step.sleep("nap", "1h")

    @app.workflow(names["quick"])
    async def quick(ctx: tarry.Context, step: tarry.Step) -> Any:
        return await step.run("echo", lambda: ctx.payload)

    @app.workflow(names["flaky"], retries=3)
    async def flaky(ctx: tarry.Context, step: tarry.Step) -> Any:
        def once_more() -> str:
            tries[ctx.run_id] = tries.get(ctx.run_id, 0) + 1
            if tries[ctx.run_id] < 3:
                raise ConnectionError("not yet")
            return "ok"

        return await step.run("call", once_more)

    @app.workflow(names["doomed"], retries=2)
    async def doomed(ctx: tarry.Context, step: tarry.Step) -> Any:
        def never() -> None:
            raise tarry.NonRetriableError("no")

        return await step.run("call", never)

    @app.workflow(names["hold"])
    async def hold(ctx: tarry.Context, step: tarry.Step) -> Any:
        async def held() -> int:
            await gate.wait()
            return 1

        return await step.run("held", held)

    return names


async def settle(app: tarry.App, run_ids: list[str], *statuses: str, timeout: float = 15) -> None:
    give_up = time.monotonic() + timeout
    while True:
        runs = [await app.get_run(run_id) for run_id in run_ids]
        if all(run.status in statuses for run in runs):
            return
        if time.monotonic() > give_up:
            raise AssertionError([(run.id, run.status) for run in runs])
        await asyncio.sleep(0.02)


async def test_metrics_match_the_store(make_app: Callable[..., tarry.App]) -> None:
    gate = asyncio.Event()
    app = make_app()
    names = register_metered(app, f"m{uuid.uuid4().hex[:8]}", gate)
    async with asgi_client(app) as client:
        # No worker yet: every run is queued.
        started: dict[str, list[str]] = {}
        for key, n in (("wait", 3), ("nap", 2), ("quick", 4), ("flaky", 1), ("doomed", 1)):
            started[key] = [await app.start(names[key]) for _ in range(n)]
        before = await scrape(client)
        for key, ids in started.items():
            assert value(before, "tarry_runs", workflow=names[key], status="queued") == len(ids)
            assert value(before, "tarry_runs", workflow=names[key], status="running") == 0
        assert value(before, "tarry_runs_started_total", workflow=names["quick"]) == 4
        assert value(before, "tarry_store_up") == 1

        async with app.worker(concurrency=8):
            await settle(app, started["wait"] + started["nap"], "waiting")
            await settle(app, started["quick"] + started["flaky"], "completed")
            await settle(app, started["doomed"], "failed")
            held = await app.start(names["hold"])
            await settle(app, [held], "running")
            # Worker slots: the held run alone executes (once the others' executions
            # have wound down after their last commit), then none.
            during = await scrape_until(client, "tarry_worker_slots_in_use", 1)
            assert value(during, "tarry_runs", workflow=names["hold"], status="running") == 1
            await asyncio.sleep(0.05)  # the held step takes at least this long
            gate.set()
            await settle(app, [held], "completed")
            after = await scrape_until(client, "tarry_worker_slots_in_use", 0)

    # Runs not ended, by status, and parked runs by wait kind: as the store has them.
    for key in names:
        for status in ("queued", "running", "waiting"):
            page = await app.list_runs(workflow=names[key], status=status, limit=100)
            assert value(after, "tarry_runs", workflow=names[key], status=status) == len(
                page.items
            ), (key, status)
    assert value(after, "tarry_runs_parked", workflow=names["wait"], kind="signal") == 3
    assert value(after, "tarry_runs_parked", workflow=names["nap"], kind="sleep") == 2
    assert value(after, "tarry_runs_parked", workflow=names["quick"], kind="signal") is None

    # The oldest wait: since the run that parked first parked, on the store's clock.
    parked = [await app.get_run(run_id) for run_id in started["wait"]]
    first = min(run.updated_at for run in parked)
    age = value(after, "tarry_oldest_wait_seconds", workflow=names["wait"], kind="signal")
    assert age is not None
    expected = app.clock.now() - first.timestamp()
    assert expected - 2.0 <= age <= expected + 0.5

    # Runs that ended here, by how they ended: as many as the store holds.
    for key, status in (("quick", "completed"), ("flaky", "completed"), ("doomed", "failed")):
        page = await app.list_runs(workflow=names[key], status=status, limit=100)
        ended = value(after, "tarry_runs_ended_total", workflow=names[key], status=status)
        assert ended == len(page.items) == len(started[key])

    # Steps: one duration per step that completed; attempts as the store recorded them.
    assert value(after, "tarry_step_duration_seconds_count", workflow=names["quick"]) == 4
    held_took = value(after, "tarry_step_duration_seconds_sum", workflow=names["hold"])
    assert held_took is not None and held_took >= 0.05
    flaky_run = await app.get_run(started["flaky"][0])
    attempts = flaky_run.steps[0].attempts
    assert attempts == 3
    flaky, doomed = names["flaky"], names["doomed"]
    assert value(after, "tarry_step_attempts_sum", workflow=flaky, outcome="completed") == attempts
    below = value(
        after, "tarry_step_attempts_bucket", workflow=flaky, outcome="completed", le="2.0"
    )
    assert below == 0
    assert value(after, "tarry_step_retries_total", workflow=flaky) == attempts - 1
    assert value(after, "tarry_step_attempts_count", workflow=doomed, outcome="failed") == 1

    # Claims: each fresh run once, from its start; a retry's claim from its backoff's end.
    assert value(after, "tarry_claim_latency_seconds_count", workflow=names["quick"]) == 4
    latency = value(after, "tarry_claim_latency_seconds_sum", workflow=names["quick"])
    assert latency is not None and 0 <= latency < 4 * 10
    assert value(after, "tarry_claim_latency_seconds_count", workflow=names["flaky"]) == attempts

    # Store operations, each timed under its own name.
    for operation in ("create_run", "claim", "save_step", "park", "finish", "run_counts"):
        count = value(after, "tarry_store_operation_seconds_count", operation=operation)
        assert count is not None and count > 0, operation
    starts = value(after, "tarry_store_operation_seconds_count", operation="create_run")
    assert starts is not None and starts >= 12


async def test_the_route_is_behind_the_token_as_the_api_is(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    async with make_client(token=TOKEN) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            metrics = await client.get("/metrics", headers=headers)
            api = await client.get("/api/v1/workflows", headers=headers)
            assert metrics.status_code == api.status_code == 401, headers
            assert metrics.json() == api.json()
            assert metrics.headers["www-authenticate"] == "Bearer"
        allowed = await scrape(client, headers={"Authorization": f"Bearer {TOKEN}"})
        assert value(allowed, "tarry_store_up") == 1
    async with make_client() as open_client:
        assert value(await scrape(open_client), "tarry_store_up") == 1


async def test_the_collector_in_a_registry_of_ones_own(make_app: Callable[..., tarry.App]) -> None:
    app = make_app()
    prefix = f"e{uuid.uuid4().hex[:8]}"
    names = register_metered(app, prefix, asyncio.Event())
    registry = CollectorRegistry()  # describes each collector on register: no store read
    mine = Counter("shop_orders", "The shop's own.", registry=registry)
    mine.inc(2)
    collector = tarry.metrics.collector(app)
    try:
        registry.register(collector)
        waiting = [await app.start(names["wait"]) for _ in range(2)]
        async with app.worker():
            await settle(app, waiting, "waiting")
            # A registry collects on the scraping thread, through the App's portal.
            text = await asyncio.to_thread(generate_latest, registry)
    finally:
        collector.close()
    samples = parse(text.decode())
    assert value(samples, "shop_orders_total") == 2
    assert value(samples, "tarry_runs", workflow=names["wait"], status="waiting") == 2
    assert value(samples, "tarry_runs_parked", workflow=names["wait"], kind="signal") == 2
    assert value(samples, "tarry_runs_started_total", workflow=names["wait"]) == 2
    # close() hands the store its own methods back.
    store = app._store
    assert all(name not in vars(store) for name in OPERATIONS)


async def test_a_store_that_does_not_answer_costs_only_its_counts(
    make_app: Callable[..., tarry.App], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    names = register_metered(app, f"d{uuid.uuid4().hex[:8]}", asyncio.Event())
    await app.start(names["quick"])
    collector = tarry.metrics.collector(app, time_store=False)

    async def down() -> Any:
        raise tarry.errors.StoreUnavailable("the database is down")

    store = await app._open()
    monkeypatch.setattr(store, "run_counts", down)
    samples = parse((await collector.exposition()).decode())
    assert value(samples, "tarry_store_up") == 0
    assert not any(name == "tarry_runs" for name, _ in samples)
    assert value(samples, "tarry_runs_started_total", workflow=names["quick"]) == 1


async def test_without_the_extra_metrics_say_what_to_install(
    tarry_app: tarry.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "prometheus_client" else real(name, *a),
    )
    with pytest.raises(tarry.metrics.MetricsExtraMissing, match=r"pip install 'tarry\[metrics\]'"):
        tarry.metrics.collector(tarry_app)
    async with asgi_client(tarry_app) as client:
        response = await client.get("/metrics")
    assert response.status_code == 404
    assert "pip install 'tarry[metrics]'" in response.json()["error"]["message"]


def test_a_worker_without_metrics_never_imports_prometheus(tmp_path: Any) -> None:
    program = textwrap.dedent(f"""
        import sys
        import tarry, tarry.server

        app = tarry.App("sqlite:///{tmp_path}/t.db")

        @app.workflow("one")
        async def one(ctx, step):
            return await step.run("a", lambda: 1)

        async def main():
            run_id = await app.start("one")
            async with app.worker():
                assert await app.result(run_id, timeout=10) == 1
            await app.close()

        import asyncio
        asyncio.run(main())
        print("prometheus_client" in sys.modules)
    """)
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False", done.stderr
