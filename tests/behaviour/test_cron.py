"""Cron triggers on virtual time, on both stores: one run per slot with the slot in
its payload, what a worker starts after a downtime (``catch_up``), daylight saving
time in Europe/Berlin as cronsim (Debian's cron) defines it, and bad input refused
at decoration."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

import tarry
from tarry.queued_reason import why_queued
from tarry.schedules import plan, slot_of, slot_run_id
from tarry.testing import Environment

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def new_app(**options: object) -> tarry.App:
    # The database is never opened: each environment runs on the test's store.
    return tarry.App("sqlite:///:memory:", **options)  # type: ignore[arg-type]


async def cron_runs(env: Environment, workflow: str) -> list[tarry.Run]:
    page = await env.list_runs(workflow=workflow, limit=1000)
    return sorted(page.items, key=lambda run: run.payload["scheduled_at"])


def stamps(runs: list[tarry.Run]) -> list[str]:
    return [run.payload["scheduled_at"] for run in runs]


def minutes(start: datetime, *offsets: int) -> list[str]:
    return [(start + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ") for m in offsets]


async def test_a_cron_every_minute_starts_one_run_per_slot_for_ten_minutes(
    database_url: str,
) -> None:
    app = new_app()
    seen: list[dict[str, str]] = []

    @app.workflow("tick", on=tarry.cron("* * * * *", tz="Europe/Berlin"))
    async def tick(ctx: tarry.Context, step: tarry.Step) -> str:
        seen.append(ctx.payload)
        return ctx.payload["scheduled_at"]

    async with Environment(app, database=database_url, start=T0) as env:
        await env.advance("10m")
        runs = await cron_runs(env, "tick")

    # A new schedule owes nothing from before its first worker: 00:00 is not started.
    assert stamps(runs) == minutes(T0, *range(1, 11))
    assert [run.status for run in runs] == ["completed"] * 10
    assert [run.id for run in runs] == [f"cron:tick:{s}" for s in stamps(runs)]
    assert [run.output for run in runs] == stamps(runs)
    assert len(seen) == 10
    assert seen[0] == {
        "scheduled_at": "2030-01-01T00:01:00Z",
        "local_time": "2030-01-01T01:01:00+01:00",
        "cron": "* * * * *",
        "tz": "Europe/Berlin",
    }
    for run in runs:  # each run was started at its slot, not before and not after
        assert run.created_at == datetime.fromisoformat(run.payload["scheduled_at"])


async def test_the_worker_sleeps_until_the_next_slot_and_reads_nothing_between(
    database_url: str,
) -> None:
    app = new_app()

    @app.workflow("hourly", on=tarry.cron("0 * * * *"))
    async def hourly(ctx: tarry.Context, step: tarry.Step) -> None:
        return None

    async with Environment(app, database=database_url, start=T0 + timedelta(minutes=30)) as env:
        await env.run_until_idle()  # the first look: the schedule is new, nothing is due
        reads = 0
        store = env.app._store
        marks = store.schedule_marks

        async def counted() -> dict[str, float]:
            nonlocal reads
            reads += 1
            return await marks()

        store.schedule_marks = counted  # type: ignore[method-assign]
        await env.advance("29m")  # nothing is due: the store is not asked
        assert reads == 0
        assert (await env.list_runs(workflow="hourly")).items == []
        await env.advance("1m")
        assert reads == 1
        assert stamps(await cron_runs(env, "hourly")) == ["2030-01-01T01:00:00Z"]


@pytest.mark.parametrize(
    ("catch_up", "after_restart", "ten_minutes_later"),
    [
        ("latest", ["02:00"], ["02:00", "02:10"]),
        ("all", ["00:40", "00:50", *(f"01:{m:02}" for m in range(0, 60, 10)), "02:00"], None),
        ("none", [], ["02:10"]),
    ],
)  # fmt: skip
async def test_slots_missed_while_no_worker_ran_start_as_catch_up_says(
    database_url: str,
    catch_up: str,
    after_restart: list[str],
    ten_minutes_later: list[str] | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = new_app()

    @app.workflow("digest", on=tarry.cron("*/10 * * * *", catch_up=catch_up))  # type: ignore[arg-type]
    async def digest(ctx: tarry.Context, step: tarry.Step) -> None:
        return None

    async with Environment(app, database=database_url, start=T0) as env:
        await env.advance("30m")
        assert stamps(await cron_runs(env, "digest")) == minutes(T0, 10, 20, 30)
    # No worker from 00:30 to 02:05: nine slots (00:40 to 02:00) are missed.
    async with Environment(
        app, database=database_url, start=T0 + timedelta(hours=2, minutes=5)
    ) as env:
        with caplog.at_level(logging.WARNING, logger="tarry"):
            await env.run_until_idle()
        started = stamps(await cron_runs(env, "digest"))[3:]
        assert started == [f"2030-01-01T{hm}:00Z" for hm in after_restart]
        skipped = 9 - len(after_restart)
        warned = [r.getMessage() for r in caplog.records if "missed" in r.getMessage()]
        assert warned == (
            [f"cron workflow 'digest': {skipped} slot(s) missed while no worker ran were not "
             f"started (catch_up={catch_up!r})"] if skipped else []
        )  # fmt: skip
        await env.advance("5m")  # on time again: 02:10 starts, whatever catch_up says
        later = stamps(await cron_runs(env, "digest"))[3:]
        expected = ten_minutes_later if ten_minutes_later is not None else [*after_restart, "02:10"]
        assert later == [f"2030-01-01T{hm}:00Z" for hm in expected]
        assert all(run.status == "completed" for run in await cron_runs(env, "digest"))


async def test_catch_up_all_starts_at_most_a_thousand_slots(database_url: str) -> None:
    app = new_app()

    @app.workflow("often", on=tarry.cron("* * * * *", catch_up="all"))
    async def often(ctx: tarry.Context, step: tarry.Step) -> None:
        return None

    async with Environment(app, database=database_url, start=T0) as env:
        await env.run_until_idle()  # the schedule is seen: covered from 00:00
    restart = T0 + timedelta(minutes=1500)
    async with Environment(app, database=database_url, start=restart) as env:
        await env.run_until_idle()
        runs = await cron_runs(env, "often")
    assert len(runs) == 1000  # the newest thousand of the 1,500 missed
    assert stamps(runs)[0] == minutes(T0, 501)[0]
    assert stamps(runs)[-1] == minutes(T0, 1500)[0]


async def test_a_worker_started_just_after_a_slot_still_starts_it(database_url: str) -> None:
    app = new_app()

    @app.workflow("daily", on=tarry.cron("0 9 * * *", catch_up="none"))
    async def daily(ctx: tarry.Context, step: tarry.Step) -> None:
        return None

    async with Environment(app, database=database_url, start=T0) as env:
        await env.run_until_idle()
    nine = T0 + timedelta(hours=9)
    async with Environment(app, database=database_url, start=nine + timedelta(seconds=20)) as env:
        await env.run_until_idle()  # 20 s late is on time, even for catch_up="none"
        assert stamps(await cron_runs(env, "daily")) == ["2030-01-01T09:00:00Z"]


BERLIN_SPRING = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # clocks go 02:00 -> 03:00 on the 29th
BERLIN_AUTUMN = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)  # clocks go 03:00 -> 02:00 on the 25th


async def test_dst_spring_a_slot_in_the_skipped_hour_runs_right_after_the_jump(
    database_url: str,
) -> None:
    app = new_app()

    @app.workflow("at-half-past-two", on=tarry.cron("30 2 * * *", tz="Europe/Berlin"))
    async def at_half_past_two(ctx: tarry.Context, step: tarry.Step) -> None:
        return None

    @app.workflow("half-past-every-hour", on=tarry.cron("30 * * * *", tz="Europe/Berlin"))
    async def every_hour(ctx: tarry.Context, step: tarry.Step) -> None:
        return None

    async with Environment(app, database=database_url, start=BERLIN_SPRING) as env:
        await env.advance("2d")
        daily = await cron_runs(env, "at-half-past-two")
        hourly = await cron_runs(env, "half-past-every-hour")
    # 02:30 does not exist on the 29th: the daily job runs at 03:00 CEST, once.
    assert [run.payload["local_time"] for run in daily] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    assert stamps(daily) == ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]
    # The hourly job has no 02:30 that day: 01:30 CET, then 03:30 CEST, an hour later.
    local = [run.payload["local_time"] for run in hourly]
    assert "2026-03-29T01:30:00+01:00" in local
    after = local[local.index("2026-03-29T01:30:00+01:00") + 1]
    assert after == "2026-03-29T03:30:00+02:00"
    assert len(hourly) == 48 and len(set(stamps(hourly))) == 48


async def test_dst_autumn_a_fixed_time_runs_once_and_an_hourly_job_twice_in_the_repeated_hour(
    database_url: str,
) -> None:
    app = new_app()

    @app.workflow("at-half-past-two", on=tarry.cron("30 2 * * *", tz="Europe/Berlin"))
    async def at_half_past_two(ctx: tarry.Context, step: tarry.Step) -> None:
        return None

    @app.workflow("half-past-every-hour", on=tarry.cron("30 * * * *", tz="Europe/Berlin"))
    async def every_hour(ctx: tarry.Context, step: tarry.Step) -> None:
        return None

    async with Environment(app, database=database_url, start=BERLIN_AUTUMN) as env:
        await env.advance("1d")
        daily = await cron_runs(env, "at-half-past-two")
        hourly = await cron_runs(env, "half-past-every-hour")
    # 02:30 happens twice on the 25th (CEST, then CET): the daily job runs once.
    assert [run.payload["local_time"] for run in daily] == ["2026-10-25T02:30:00+02:00"]
    # Every-hour jobs run on both: two runs, two ids, one local time.
    twice = [run for run in hourly if run.payload["local_time"].startswith("2026-10-25T02:30")]
    assert [run.payload["local_time"] for run in twice] == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:30:00+01:00",
    ]
    assert [run.id for run in twice] == [
        "cron:half-past-every-hour:2026-10-25T00:30:00Z",
        "cron:half-past-every-hour:2026-10-25T01:30:00Z",
    ]
    assert len(hourly) == 24 and len(set(stamps(hourly))) == 24  # one a real hour


async def test_a_cron_and_event_triggers_on_one_workflow(database_url: str) -> None:
    app = new_app()

    @app.workflow("report", on=[tarry.cron("0 * * * *"), "app/report.requested"])
    async def report(ctx: tarry.Context, step: tarry.Step) -> str:
        return "event" if ctx.event is not None else ctx.payload["scheduled_at"]

    async with Environment(app, database=database_url, start=T0) as env:
        sent = await env.send_event("app/report.requested", {"by": "alice"})
        await env.advance("1h")
        outputs = sorted(run.output for run in (await env.list_runs(workflow="report")).items)
    assert len(sent.started) == 1
    assert outputs == ["2030-01-01T01:00:00Z", "event"]


async def test_a_queued_cron_run_says_which_slot_it_is_for() -> None:
    app = new_app()

    @app.workflow("tick", on=tarry.cron("* * * * *"))
    async def tick(ctx: tarry.Context, step: tarry.Step) -> None:
        return None

    async with Environment(app, start=T0) as env:
        await env.advance("1m")
        run = (await env.list_runs(workflow="tick")).items[0]
    queued = replace(run, status="queued", due_at=run.created_at)
    assert why_queued(queued, T0 + timedelta(minutes=1)) == (
        "scheduled (cron slot 2030-01-01 00:01:00 UTC)"
    )
    assert why_queued(run, T0) is None  # it has ended
    assert slot_of(run.id, "tick") == T0 + timedelta(minutes=1)
    assert slot_of(run.id, "other") is None


def test_a_long_workflow_id_gives_slot_run_ids_within_the_limit() -> None:
    workflow = "w" * 256
    run_id = slot_run_id(workflow, T0.timestamp())
    assert len(run_id) <= 256
    assert slot_of(run_id, workflow) == T0


def test_a_seconds_field_and_the_plan_for_a_new_schedule() -> None:
    every_five = tarry.cron("*/5 * * * * *")
    assert every_five.next_after(T0.timestamp()) == T0.timestamp() + 5
    assert plan(every_five, None, T0.timestamp()).start == []  # new: nothing owed
    assert plan(every_five, T0.timestamp(), T0.timestamp() + 12).start == [T0.timestamp() + 10]


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: tarry.cron("61 * * * *"), "'61 * * * *'"),
        (lambda: tarry.cron("* * *"), "'* * *'"),
        (lambda: tarry.cron("0 0 30 2 *"), "'0 0 30 2 *'"),  # February 30th: never
        (lambda: tarry.cron(""), "''"),
        (lambda: tarry.cron(42), "42"),  # type: ignore[arg-type]
        (lambda: tarry.cron("0 9 * * MON", tz="Europe/Berln"), "'Europe/Berln'"),
        (lambda: tarry.cron("0 9 * * MON", tz="../etc/passwd"), "'../etc/passwd'"),
        (lambda: tarry.cron("0 9 * * MON", tz=""), "''"),
        (lambda: tarry.cron("0 9 * * MON", catch_up="some"), "'some'"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_expression_zone_or_catch_up_is_a_config_error_naming_it(
    build: object, named: str
) -> None:
    with pytest.raises(tarry.ConfigError, match=named.replace("*", r"\*").replace(".", r"\.")):
        build()  # type: ignore[operator]


def test_one_cron_per_workflow() -> None:
    app = new_app()
    with pytest.raises(tarry.ConfigError, match=r"one tarry\.cron"):
        app.workflow("two", on=[tarry.cron("0 9 * * *"), tarry.cron("0 17 * * *")])
    assert "two" not in app.workflows


async def test_the_api_and_dashboard_list_a_workflows_schedule(sqlite_url: str) -> None:
    import httpx

    from tarry.server import create_app

    app = tarry.App(sqlite_url)

    @app.workflow("digest", on=tarry.cron("0 9 * * MON", tz="Europe/Berlin", catch_up="none"))
    async def digest(ctx: tarry.Context, step: tarry.Step) -> None:
        return None

    @app.workflow("plain")
    async def plain(ctx: tarry.Context, step: tarry.Step) -> None:
        return None

    transport = httpx.ASGITransport(app=create_app(app))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            listed = (await client.get("/api/v1/workflows")).json()
            page = (await client.get("/workflows")).text
    finally:
        await app.close()
    schedules = {w["id"]: w["schedule"] for w in listed}
    assert schedules == {
        "digest": {"cron": "0 9 * * MON", "tz": "Europe/Berlin", "catch_up": "none"},
        "plain": None,
    }
    assert "Started on a schedule: <code>0 9 * * MON</code> in Europe/Berlin" in page
