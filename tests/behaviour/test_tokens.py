"""Callback tokens: create, complete (once), expire, refuse, wait in several ways."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

import tarry
from tarry.testing import Environment

from helpers import step


def token_app(app: tarry.App, *, timeout: object = "14d", pause: str | None = None) -> None:
    """``contract``: creates a token, optionally sleeps, then waits for it."""

    @app.workflow("contract")
    async def contract(ctx, step):
        token = await step.create_token("contract-signed", timeout=timeout)
        if pause is not None:
            await step.sleep("pause", pause)
        data = await step.wait_for_token(token)
        return {"data": data, "token": token.id}


async def token_id_of(env: Environment, run_id: str) -> str:
    await env.run_until_idle()
    record = step(await env.get_run(run_id), "contract-signed")
    assert (record.kind, record.status) == ("create_token", "completed")
    return str(record.output["id"])


async def test_created_then_completed_resumes_the_run_with_the_data(app, database_url) -> None:
    seen: list[tarry.Token] = []

    @app.workflow("contract")
    async def contract(ctx, step):
        token = await step.create_token("contract-signed", timeout="14d")
        await step.run("mail", lambda: seen.append(token) or "sent")
        return await step.wait_for_token(token)

    async with Environment(app, database=database_url) as env:
        begin = env.now
        run_id = await env.start("contract")
        waiting = await env.waiting(run_id)
        assert waiting is not None
        assert (waiting.kind, waiting.key, waiting.step) == (
            "token",
            "contract-signed",
            "wait:contract-signed",
        )
        assert waiting.expires_at == begin + timedelta(days=14)
        (token,) = seen
        assert len(token.id) == 32 and int(token.id, 16) >= 0  # 128 random bits, as hex
        assert (token.name, token.run_id, token.expires_at) == (
            "contract-signed",
            run_id,
            begin + timedelta(days=14),
        )
        url = urlsplit(token.url)
        assert f"{url.scheme}://{url.netloc}" == "http://127.0.0.1:8000"
        assert url.path == f"/api/v1/tokens/{token.id}"
        assert parse_qs(url.query)["sig"][0]
        assert await env.app.complete_token(token.id, {"signed": True}) == run_id
        assert await env.result(run_id) == {"signed": True}
        info = await env.app.get_token(token.id)
        assert (info.state, info.data, info.run_id, info.workflow) == (
            "completed",
            {"signed": True},
            run_id,
            "contract",
        )


async def test_a_completion_before_the_wait_is_not_lost(app, database_url) -> None:
    token_app(app, pause="1h")
    async with Environment(app, database=database_url) as env:
        run_id = await env.start("contract")
        token_id = await token_id_of(env, run_id)
        waiting = await env.waiting(run_id)
        assert waiting is not None and waiting.kind == "sleep"
        await env.app.complete_token(token_id, {"signed": "early"})
        await env.advance("1h")  # past the sleep: the wait answers at once
        assert await env.result(run_id) == {"data": {"signed": "early"}, "token": token_id}


async def test_one_shot_the_first_completion_stands(app, database_url) -> None:
    token_app(app)
    async with Environment(app, database=database_url) as env:
        run_id = await env.start("contract")
        token_id = await token_id_of(env, run_id)
        await env.app.complete_token(token_id, "first")
        with pytest.raises(tarry.TokenAlreadyUsed, match="completes once"):
            await env.app.complete_token(token_id, "second")
        assert (await env.result(run_id))["data"] == "first"
        with pytest.raises(tarry.TokenAlreadyUsed):
            await env.app.complete_token(token_id, "third")
        assert (await env.app.get_token(token_id)).data == "first"


async def test_expired_token_times_the_wait_out_and_refuses_completion(app, database_url) -> None:
    token_app(app, timeout="1d")
    async with Environment(app, database=database_url) as env:
        run_id = await env.start("contract")
        token_id = await token_id_of(env, run_id)
        await env.advance("23h59m")
        assert (await env.app.get_token(token_id)).state == "pending"
        await env.advance("1m")
        assert await env.result(run_id) == {"data": None, "token": token_id}
        assert (await env.app.get_token(token_id)).state == "ended"  # its run is done
        with pytest.raises(tarry.TokenGone):
            await env.app.complete_token(token_id, "late")


async def test_expired_while_the_run_goes_on_is_token_expired(app, database_url) -> None:
    token_app(app, timeout="1h", pause="2h")
    async with Environment(app, database=database_url) as env:
        run_id = await env.start("contract")
        token_id = await token_id_of(env, run_id)
        await env.advance("1h")
        assert (await env.app.get_token(token_id)).state == "expired"
        with pytest.raises(tarry.TokenExpired, match="expired"):
            await env.app.complete_token(token_id, "late")
        await env.advance("1h")
        assert await env.result(run_id) == {"data": None, "token": token_id}


async def test_cancelled_run_refuses_completion(app, database_url) -> None:
    token_app(app)
    async with Environment(app, database=database_url) as env:
        run_id = await env.start("contract")
        token_id = await token_id_of(env, run_id)
        await env.cancel(run_id, "changed my mind")
        with pytest.raises(tarry.TokenRunEnded, match="ended or is being cancelled"):
            await env.app.complete_token(token_id, {"signed": True})
        assert (await env.app.get_token(token_id)).state == "ended"
        assert (await env.app.get_token(token_id)).data is None


async def test_unknown_token_and_none_data_are_refused(app) -> None:
    token_app(app)
    with pytest.raises(tarry.TokenNotFound, match="no callback token 'nope'"):
        await app.complete_token("nope", {})
    with pytest.raises(ValueError, match="None"):
        await app.complete_token("nope", None)
    with pytest.raises(tarry.TokenNotFound):
        await app.get_token("nope")


async def test_wait_for_any_token_or_timeout(app, database_url) -> None:
    @app.workflow("either")
    async def either(ctx, step):
        token = await step.create_token("reply", timeout="30d")
        woken = await step.wait_for_any(
            "first", [tarry.signal(f"stop:{ctx.run_id}"), tarry.token(token)], timeout="1h"
        )
        return None if woken is None else [woken.index, woken.value]

    async with Environment(app, database=database_url) as env:
        answered = await env.start("either", run_id="answered")
        silent = await env.start("either", run_id="silent")
        waiting = await env.waiting(answered)
        assert waiting is not None and waiting.conditions == ["signal stop:answered", "token reply"]
        token_id = step(await env.get_run(answered), "reply").output["id"]
        await env.app.complete_token(token_id, {"ok": 1})
        assert await env.result(answered) == [1, {"ok": 1}]
        await env.advance("1h")
        assert await env.result(silent) is None


async def test_wait_for_all_gets_the_token_data_in_place(app, database_url) -> None:
    @app.workflow("both")
    async def both(ctx, step):
        a = await step.create_token("a", timeout=None)
        b = await step.create_token("b", timeout=None)
        return await step.wait_for_all("ab", [tarry.token(a), tarry.token(b)], timeout="1d")

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("both")
        await env.run_until_idle()
        run = await env.get_run(run_id)
        await env.app.complete_token(step(run, "b").output["id"], "B")
        await env.app.complete_token(step(run, "a").output["id"], "A")
        assert await env.result(run_id) == ["A", "B"]


async def test_replay_returns_the_same_token(app, database_url) -> None:
    made: list[str] = []

    @app.workflow("replayed")
    async def replayed(ctx, step):
        token = await step.create_token("t", timeout="1d")
        made.append(token.id)
        await step.wait_for_signal("go", signal=f"go:{ctx.run_id}", timeout="1h")
        return token.id

    async with Environment(app, database=database_url, sticky=False) as env:
        run_id = await env.start("replayed", run_id="r1")
        await env.run_until_idle()
        await env.send_signal("go:r1", {})
        stored = step(await env.get_run(run_id), "t").output["id"]
        assert await env.result(run_id) == stored
        assert made == [stored, stored]  # the replay after the signal made no new token


async def test_a_token_of_another_run_is_refused(app, database_url) -> None:
    tokens: dict[str, tarry.Token] = {}

    @app.workflow("maker")
    async def maker(ctx, step):
        tokens["made"] = await step.create_token("t", timeout="1d")
        return "made"

    @app.workflow("thief")
    async def thief(ctx, step):
        return await step.wait_for_token(tokens["made"])

    async with Environment(app, database=database_url) as env:
        await env.result(await env.start("maker"))
        thief_id = await env.start("thief")
        with pytest.raises(tarry.RunFailed, match="a run waits only for its own tokens"):
            await env.result(thief_id)


def test_plain_def_handler_blocks_on_the_token(app, database_url) -> None:
    @app.workflow("sync-contract")
    def contract(ctx, step):
        token = step.create_token("signed", timeout="1d")
        return step.wait_for_token(token)

    with Environment(app, database=database_url) as env:
        run_id = env.start_sync("sync-contract")
        env.run_until_idle_sync()
        token_id = step(env.get_run_sync(run_id), "signed").output["id"]
        env.app.complete_token_sync(token_id, [1, 2])
        assert env.result_sync(run_id) == [1, 2]


async def test_signatures_and_rotation_with_a_grace_period(make_app) -> None:
    clock = tarry.ManualClock()
    app = make_app(clock=clock, public_url="https://flows.example.com/")
    token_app(app)
    async with app.worker():
        first = await app.start("contract")
        await wait_created(app, first)
        old = await link(app, first)
        assert old.url.startswith("https://flows.example.com/api/v1/tokens/")
        await app.get_token(old.id, signature=old.sig)  # valid: no error
        for tampered in (old.sig[:-1] + ("A" if old.sig[-1] != "A" else "B"), "", "x" * 200):
            with pytest.raises(tarry.TokenSignatureInvalid):
                await app.get_token(old.id, signature=tampered)
        await app.rotate_token_secret(grace="1h")
        second = await app.start("contract")
        await wait_created(app, second)
        new = await link(app, second)
        await app.get_token(new.id, signature=new.sig)
        await app.get_token(old.id, signature=old.sig)  # inside the grace period
        with pytest.raises(tarry.TokenSignatureInvalid):  # signed by the other secret
            await app.get_token(new.id, signature=old.sig)
        clock.advance("1h")
        with pytest.raises(tarry.TokenSignatureInvalid):
            await app.get_token(old.id, signature=old.sig)
        await app.get_token(new.id, signature=new.sig)
        await app.rotate_token_secret(grace=0)
        with pytest.raises(tarry.TokenSignatureInvalid):
            await app.get_token(new.id, signature=new.sig)


class Link:
    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        self.id = parts.path.rsplit("/", 1)[1]
        self.sig = parse_qs(parts.query)["sig"][0]


async def wait_created(app: tarry.App, run_id: str) -> None:
    from helpers import wait_for_status

    await wait_for_status(app, run_id, "waiting")


async def link(app: tarry.App, run_id: str) -> Link:
    """The token's link as the run's code saw it, rebuilt from its step record."""
    from tarry.tokens import token_url

    output = step(await app.get_run(run_id), "contract-signed").output
    return Link(token_url(app.settings.public_url or "", output["id"], output["sig"]))


def test_public_url_is_checked(tmp_path, monkeypatch) -> None:
    with pytest.raises(tarry.ConfigError, match="public_url"):
        tarry.App(f"sqlite:///{tmp_path}/a.db", public_url="flows.example.com")
    monkeypatch.setenv("TARRY_PUBLIC_URL", "https://env.example.com/base/")
    app = tarry.App(f"sqlite:///{tmp_path}/b.db")
    assert app.settings.public_url == "https://env.example.com/base"
    app.serve_at("http://127.0.0.1:9000/")  # a server does not override what was said
    assert app.settings.public_url == "https://env.example.com/base"
    monkeypatch.delenv("TARRY_PUBLIC_URL")
    bare = tarry.App(f"sqlite:///{tmp_path}/c.db")
    bare.serve_at("http://127.0.0.1:9000/")
    assert bare.settings.public_url == "http://127.0.0.1:9000"


async def test_a_schema_checks_the_completion_and_the_wait_returns_the_model(
    app, database_url
) -> None:
    @app.workflow("approve")
    async def approve(ctx, step):
        token = await step.create_token("decision", timeout="7d", schema=tarry.Approval)
        decision = await step.wait_for_token(token)
        assert isinstance(decision, tarry.Approval)
        return {"approved": decision.approved, "by": decision.by}

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("approve")
        await env.run_until_idle()
        token_id = step(await env.get_run(run_id), "decision").output["id"]
        info = await env.app.get_token(token_id)
        assert info.schema is not None and set(info.schema["required"]) == {"approved", "by"}
        with pytest.raises(tarry.PayloadInvalid, match=r"\$\.by") as refused:
            await env.app.complete_token(token_id, {"approved": True})
        assert [v.path for v in refused.value.errors] == ["$.by"]
        assert (await env.app.get_token(token_id)).state == "pending"  # nothing stored
        await env.app.complete_token(token_id, {"approved": True, "by": "alice"})
        assert await env.result(run_id) == {"approved": True, "by": "alice"}


async def test_a_json_schema_dict_returns_the_data_and_a_bad_schema_fails_the_run(
    app, database_url
) -> None:
    shape = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}

    @app.workflow("typed")
    async def typed(ctx, step):
        token = await step.create_token("n", timeout="1d", schema=shape)
        return await step.wait_for_token(token)

    @app.workflow("bad-schema")
    async def bad_schema(ctx, step):
        return await step.create_token("t", timeout="1d", schema="not a schema")

    async with Environment(app, database=database_url) as env:
        run_id = await env.start("typed")
        await env.run_until_idle()
        token_id = step(await env.get_run(run_id), "n").output["id"]
        with pytest.raises(tarry.PayloadInvalid):
            await env.app.complete_token(token_id, {"n": "three"})
        await env.app.complete_token(token_id, {"n": 3})
        assert await env.result(run_id) == {"n": 3}
        bad = await env.start("bad-schema")
        with pytest.raises(tarry.RunFailed, match="pydantic model class or a JSON Schema dict"):
            await env.result(bad)
