"""Flow control on both stores: keyed concurrency, rate limits, debounce, priority.

Keyed concurrency is about runs executing at once, so its steps take real time
(each records when it began and ended on the monotonic clock) and the intervals of
one key must never overlap; a rate and a debounce are about when runs start, so
they run on the virtual clock (``tarry.testing.Environment``), each run recording
the clock's time in its first step, which is the time it was first claimed.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from typing import Any

import pytest

import tarry
from tarry.queued_reason import why_queued
from tarry.testing import Environment


def _overlaps(spans: list[tuple[float, float]]) -> bool:
    spans = sorted(spans)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


async def test_keyed_concurrency_one_per_key(database_url: str) -> None:
    app = tarry.App(database_url)

    @app.workflow("per-customer", concurrency=tarry.limit(1, key="event.data.customer"))
    async def per_customer(ctx: tarry.Context, step: Any) -> dict[str, Any]:
        async def work() -> dict[str, Any]:
            began = time.monotonic()
            await asyncio.sleep(0.02)
            return {"customer": ctx.payload["customer"], "began": began, "ended": time.monotonic()}

        return await step.run("work", work)

    async with Environment(app, database=database_url, concurrency=16) as env:
        ids = [await env.start("per-customer", {"customer": f"c{i % 5}"}) for i in range(50)]
        await env.run_until_idle()
        outputs = [await env.result(run_id) for run_id in ids]
    spans: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for out in outputs:
        spans[out["customer"]].append((out["began"], out["ended"]))
    assert sorted(spans) == ["c0", "c1", "c2", "c3", "c4"]
    assert all(len(each) == 10 for each in spans.values())
    for customer, each in spans.items():
        assert not _overlaps(each), f"two runs of {customer} executed at once"
    # ...while runs of different customers did execute at once.
    assert _overlaps([span for each in spans.values() for span in each])


async def test_limits_combine_and_parked_runs_free_their_slot(database_url: str) -> None:
    app = tarry.App(database_url)
    executing: collections.Counter[str] = collections.Counter()
    peak: collections.Counter[str] = collections.Counter()

    @app.workflow(
        "combined",
        concurrency=[tarry.limit(2), tarry.limit(1, key="event.data.customer")],
    )
    async def combined(ctx: tarry.Context, step: Any) -> str:
        async def work(part: str) -> None:
            customer = ctx.payload["customer"]
            for name in ("all", customer):
                executing[name] += 1
                peak[name] = max(peak[name], executing[name])
            await asyncio.sleep(0.01)
            for name in ("all", customer):
                executing[name] -= 1

        await step.run("before", work, "before")
        if ctx.payload.get("park"):
            await step.wait_for_signal("hold", signal=f"go:{ctx.run_id}", timeout=None)
        await step.run("after", work, "after")
        return str(ctx.payload["customer"])

    async with Environment(app, database=database_url, concurrency=8) as env:
        parked = await env.start("combined", {"customer": "a", "park": True})
        await env.run_until_idle()
        assert (await env.get_run(parked)).status == "waiting"
        # The parked run holds no slot of key "a": another run of "a" runs to its end.
        second = await env.start("combined", {"customer": "a"})
        others = [await env.start("combined", {"customer": c}) for c in "bcdbcd"]
        await env.run_until_idle()
        assert await env.result(second) == "a"
        await env.send_signal(f"go:{parked}", {})
        assert await env.result(parked) == "a"
        assert [await env.result(run_id) for run_id in others] == list("bcdbcd")
    assert peak["all"] == 2  # the global cap, reached and never passed
    assert max(peak[c] for c in "abcd") == 1


async def test_rate_ten_per_second_over_ten_seconds(database_url: str) -> None:
    app = tarry.App(database_url)
    clock: list[tarry.ManualClock] = []

    @app.workflow("partner-call", rate_limit=tarry.rate(10, per="1s"))
    async def partner_call(ctx: tarry.Context, step: Any) -> float:
        return await step.run("first", lambda: clock[0].now())

    async with Environment(app, database=database_url) as env:
        clock.append(env.clock)
        t0 = env.clock.now()
        ids = [await env.start("partner-call", {"i": i}) for i in range(150)]
        await env.advance("10s")
        started = [run.output for run in (await env.app.list_runs(limit=200)).items if run.output]
        queued = [run for run in (await env.app.list_runs(limit=200)).items if not run.output]
    assert len(ids) == 150
    within = [t - t0 for t in started if t - t0 < 10]
    assert 90 <= len(within) <= 110
    per_second = collections.Counter(int(offset) for offset in within)
    assert all(9 <= per_second[s] <= 11 for s in range(10)), per_second
    assert queued, "the rest wait queued"
    assert all(run.status == "queued" for run in queued)


async def test_rate_per_key_and_resumes_not_counted(database_url: str) -> None:
    app = tarry.App(database_url)
    clock: list[tarry.ManualClock] = []

    @app.workflow("hourly", rate_limit=tarry.rate(1, per="1h", key="event.data.partner"))
    async def hourly(ctx: tarry.Context, step: Any) -> list[float]:
        first = await step.run("first", lambda: clock[0].now())
        await step.sleep("pause", "1s")
        return [first, await step.run("again", lambda: clock[0].now())]

    async with Environment(app, database=database_url) as env:
        clock.append(env.clock)
        t0 = env.clock.now()
        a1 = await env.start("hourly", {"partner": "a"})
        a2 = await env.start("hourly", {"partner": "a"})
        b1 = await env.start("hourly", {"partner": "b"})
        await env.advance("10s")
        # One start per partner per hour; the resume after the sleep is not held back.
        assert await env.result(a1) == [t0, t0 + 1]
        assert await env.result(b1) == [t0, t0 + 1]
        assert (await env.get_run(a2)).status == "queued"
        await env.advance("1h")
        assert await env.result(a2) == [t0 + 3600, t0 + 3601]


async def test_debounce_collapses_twenty_events_into_one_run(database_url: str) -> None:
    app = tarry.App(database_url)
    clock: list[tarry.ManualClock] = []

    @app.workflow(
        "reindex",
        on="profile/updated",
        debounce=tarry.debounce("5s", key="event.data.user"),
    )
    async def reindex(ctx: tarry.Context, step: Any) -> dict[str, Any]:
        at = await step.run("at", lambda: clock[0].now())
        return {"n": ctx.event.data["n"], "user": ctx.event.data["user"], "at": at}

    async with Environment(app, database=database_url) as env:
        clock.append(env.clock)
        sent = []
        for n in range(20):
            sent.append(await env.send_event("profile/updated", {"user": "u1", "n": n}))
            await env.advance("1s")
        other = await env.send_event("profile/updated", {"user": "u2", "n": 0})
        last_sent = env.clock.now() - 1
        run_ids = {run_id for result in sent for run_id in result.started}
        assert len(run_ids) == 1
        (run_id,) = run_ids
        assert (await env.get_run(run_id)).status == "queued"  # the window is still open
        await env.advance("10s")
        assert await env.result(run_id) == {"n": 19, "user": "u1", "at": last_sent + 5}
        assert (await env.result(other.started[0]))["user"] == "u2"
        runs = (await env.app.list_runs(workflow="reindex")).items
    assert len(runs) == 2


async def test_debounce_max_wait_and_starts(database_url: str) -> None:
    app = tarry.App(database_url)

    @app.workflow("digest", debounce=tarry.debounce("5s", max_wait="12s"))
    async def digest(ctx: tarry.Context, step: Any) -> Any:
        return ctx.payload

    async with Environment(app, database=database_url) as env:
        t0 = env.clock.now()
        first = await env.start("digest", {"n": 0})
        later = []
        for n in range(1, 20):
            await env.advance("1s")
            later.append(await env.start("digest", {"n": n}))
        assert later[:11] == [first] * 11
        assert len(set(later[11:])) == 1 and first not in later[11:]
        # Never pushed past max_wait after the first start: it ran at t0 + 12 with
        # the data of the start just before, and later starts opened a new window.
        ran = await env.get_run(first)
        assert ran.status == "completed" and ran.output == {"n": 11}
        assert ran.ended_at is not None and ran.ended_at.timestamp() == t0 + 12
        await env.advance("1m")
        runs = (await env.app.list_runs(workflow="digest")).items
    assert sorted(run.output["n"] for run in runs) == [11, 19]


async def test_priority_higher_first_with_one_slot(make_app: Any) -> None:
    app = make_app()
    order: list[str] = []

    @app.workflow("one-at-a-time", concurrency=1)
    async def one_at_a_time(ctx: tarry.Context, step: Any) -> None:
        await step.run("note", lambda: order.append(ctx.payload["name"]))

    @app.workflow("urgent", concurrency=1, priority=7)
    async def urgent(ctx: tarry.Context, step: Any) -> None:
        await step.run("note", lambda: order.append(ctx.payload["name"]))

    ids = [await app.start("one-at-a-time", {"name": f"p0-{i}"}) for i in range(5)]
    ids += [await app.start("one-at-a-time", {"name": f"p5-{i}"}, priority=5) for i in range(5)]
    ids += [await app.start("one-at-a-time", {"name": f"p-3-{i}"}, priority=-3) for i in range(2)]
    ids.append(await app.start("urgent", {"name": "urgent"}))
    async with app.worker(concurrency=1):
        for run_id in ids:
            await app.result(run_id, timeout=20)
    assert order == [
        "urgent", *[f"p5-{i}" for i in range(5)], *[f"p0-{i}" for i in range(5)],
        *[f"p-3-{i}" for i in range(2)],
    ]  # fmt: skip


async def test_key_that_fails_on_the_data_files_under_null(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = tarry.App(database_url)

    @app.workflow("keyed", concurrency=tarry.limit(1, key="event.data.customer.id"))
    async def keyed(ctx: tarry.Context, step: Any) -> str:
        return "ran"

    caplog.set_level(logging.WARNING, logger="tarry.runs")
    async with Environment(app, database=database_url) as env:
        run_id = await env.start("keyed", {"no_customer": True})
        assert await env.result(run_id) == "ran"
    failed = [r for r in caplog.records if getattr(r, "event", None) == "flow_key_failed"]
    assert len(failed) == 1
    assert run_id in failed[0].getMessage() and "null" in failed[0].getMessage()


@pytest.mark.parametrize(
    ("build", "error", "named"),
    [
        (lambda: tarry.limit(0), tarry.ConfigError, "0"),
        (lambda: tarry.limit(-2, key="event.data.x"), tarry.ConfigError, "-2"),
        (lambda: tarry.limit(True), tarry.ConfigError, "True"),
        (lambda: tarry.limit(1, key="event.data.("), tarry.ExpressionError, "event.data.("),
        (lambda: tarry.rate(-5, per="1m"), tarry.ConfigError, "-5"),
        (lambda: tarry.rate(5, per="-1s"), tarry.ConfigError, "-1s"),
        (lambda: tarry.rate(5, per="soon"), tarry.ConfigError, "soon"),
        (lambda: tarry.rate(5, per="0s"), tarry.ConfigError, "0s"),
        (lambda: tarry.rate(5, per="1s", burst=6), tarry.ConfigError, "6"),
        (lambda: tarry.debounce("5 minutes"), tarry.ConfigError, "5 minutes"),
        (lambda: tarry.debounce("5m", max_wait="1m"), tarry.ConfigError, "1m"),
        (lambda: tarry.debounce("5m", key="evnt.data.x"), tarry.ExpressionError, "evnt"),
    ],
)
def test_bad_flow_options_name_the_value(build: Any, error: type[Exception], named: str) -> None:
    with pytest.raises(error) as caught:
        build()
    assert named in str(caught.value)


async def test_bad_options_at_decoration_and_start_store_nothing(database_url: str) -> None:
    app = tarry.App(database_url)
    with pytest.raises(tarry.ConfigError, match="priority"):
        app.workflow("w", priority="high")  # type: ignore[arg-type]
    with pytest.raises(tarry.ConfigError, match="'nine'"):
        app.workflow("w", concurrency=[tarry.limit(1, key="event.data.x"), "nine"])  # type: ignore[list-item]
    with pytest.raises(tarry.ConfigError, match="rate_limit"):
        app.workflow("w", rate_limit=10)  # type: ignore[arg-type]

    @app.workflow("w")
    async def w(ctx: tarry.Context, step: Any) -> None:
        return None

    try:
        for bad in ("5", 1.5, True, 10**9):
            with pytest.raises(tarry.ConfigError, match="priority"):
                await app.start("w", priority=bad)  # type: ignore[arg-type]
        assert (await app.list_runs()).items == []
    finally:
        await app.close()


async def test_why_a_queued_run_waits(make_app: Any) -> None:
    app = make_app()
    release = asyncio.Event()

    @app.workflow("per-customer", concurrency=tarry.limit(1, key="event.data.customer"))
    async def per_customer(ctx: tarry.Context, step: Any) -> None:
        if ctx.payload.get("hold"):
            await step.run("hold", release.wait)

    @app.workflow("throttled", rate_limit=tarry.rate(1, per="1h"))
    async def throttled(ctx: tarry.Context, step: Any) -> None:
        return None

    @app.workflow("gathered", debounce=tarry.debounce("1h", key="event.data.user"))
    async def gathered(ctx: tarry.Context, step: Any) -> None:
        return None

    first = await app.start("per-customer", {"customer": "customer-7", "hold": True})
    second = await app.start("per-customer", {"customer": "customer-7"})
    throttled_ids = [await app.start("throttled") for _ in range(2)]
    gathering = await app.start("gathered", {"user": "u1"})
    async with app.worker(concurrency=4):
        for _ in range(500):
            run = await app.get_run(first)
            if run.status == "running" and (await app.get_run(throttled_ids[0])).ended:
                break
            await asyncio.sleep(0.01)
        now = app.clock.now()
        reason = why_queued
        assert reason(await app.get_run(second), now) == (
            "concurrency key busy (customer-7: 1 of 1 executing)"
        )
        assert (reason(await app.get_run(throttled_ids[1]), now) or "").startswith(
            "rate-limited until "
        )
        assert (reason(await app.get_run(gathering), now) or "").startswith("debouncing until ")
        listed = {r.id: r for r in (await app.list_runs(status="queued")).items}
        assert reason(listed[second], now) == reason(await app.get_run(second), now)
        release.set()
        await app.result(second, timeout=10)


async def test_why_a_due_run_waits_behind_higher_priority(make_app: Any) -> None:
    app = make_app()

    @app.workflow("w")
    async def w(ctx: tarry.Context, step: Any) -> None:
        return None

    urgent = [await app.start("w", priority=5) for _ in range(3)]
    normal = await app.start("w")
    now = app.clock.now()
    assert why_queued(await app.get_run(normal), now) == ("priority 0 behind 3 runs")
    assert why_queued(await app.get_run(urgent[0]), now) is None


async def test_the_test_environment_starts_runs_with_a_priority(database_url: str) -> None:
    app = tarry.App()
    order: list[str] = []

    @app.workflow("one-at-a-time", concurrency=1)
    async def one(ctx: tarry.Context, step: tarry.Step) -> None:
        await step.run("note", order.append, ctx.payload["name"])

    async with Environment(app, database=database_url) as env:
        await env.start("one-at-a-time", {"name": "plain"}, delay="1m")
        await env.start("one-at-a-time", {"name": "urgent"}, delay="1m", priority=5)
        await env.advance("1m")
    assert order == ["urgent", "plain"]
