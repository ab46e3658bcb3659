"""The form a wait's schema gets: JSON Schema -> fields -> a posted form -> JSON, and
the errors beside the fields; then the same through the dashboard on both stores
(a run's page and a callback token's confirmation page), where a refused answer
comes back with what was typed and a corrected one resumes the run with its model."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

import tarry
from tarry.errors import PayloadInvalid, Violation
from tarry.server.answers import Answerable, send_answer
from tarry.server.schema_form import FormInvalid, child_path, fields_for, form_answer, form_fields
from tarry.wait_schema import validate

from .conftest import asgi_client, wait_run
from .person_flows import Order, Reply, register_people
from .test_dashboard import csrf_of

ORDER = Order.model_json_schema()


def by_path(fields: list[Any]) -> dict[str, Any]:
    found = {}
    for f in fields:
        found[f.path] = f
        found.update(by_path(list(f.children)))
    return found


# -- JSON Schema -> fields -------------------------------------------------------------


def test_a_model_becomes_fields_of_each_kind() -> None:
    fields = by_path(form_fields(ORDER))
    shown = {p: (f.widget, f.required, f.nullable) for p, f in fields.items()}
    assert shown == {
        "$.quantity": ("integer", True, False),
        "$.colour": ("choice", True, False),
        "$.note": ("text", False, True),
        "$.express": ("boolean", False, False),
        "$.tags": ("lines", False, False),
        "$.address": ("group", False, True),
        "$.address.city": ("text", True, False),
        "$.address.postcode": ("text", False, True),
    }
    assert [c.label for c in fields["$.colour"].choices] == ["red", "green", "blue"]
    assert fields["$.quantity"].attrs == {"step": "1", "min": "1", "max": "100"}
    assert fields["$.quantity"].hint == "how many, from 1 to 100"
    assert fields["$.express"].default == "false" and fields["$.tags"].item == "string"
    assert form_fields(Reply.model_json_schema())[0].widget == "textarea"  # maxLength 2000


def test_what_cannot_be_fields_is_a_json_box_for_that_field_alone() -> None:
    schema = {
        "type": "object",
        "properties": {
            "lines": {"type": "array", "items": {"type": "object"}},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "name": {"type": "string", "format": "multi-line"},
        },
    }
    widgets = {f.path: f.widget for f in form_fields(schema)}
    assert widgets == {
        "$.lines": "json",
        "$.either": "json",
        "$.counts": "json",
        "$.name": "textarea",
    }
    assert [(f.path, f.widget) for f in form_fields({"type": "integer"})] == [("$", "integer")]
    assert [(f.path, f.widget) for f in form_fields({})] == [("$", "json")]


def test_the_approval_shape_and_no_schema_get_no_fields() -> None:
    assert fields_for(tarry.Approval.model_json_schema()) == []
    assert fields_for(None) == []
    assert fields_for(ORDER) == form_fields(ORDER)


def test_field_paths_are_the_paths_the_validator_reports() -> None:
    schema = {
        "type": "object",
        "properties": {"a b": {"type": "integer"}, "ok": {"type": "integer"}},
        "required": ["a b", "ok"],
    }
    paths = [f.path for f in form_fields(schema)]
    assert paths == [child_path("$", "a b"), "$.ok"] == ['$["a b"]', "$.ok"]
    assert {v.path for v in validate(schema, {})} == set(paths)


# -- posted form -> JSON ---------------------------------------------------------------


def test_a_posted_form_becomes_the_json_the_schema_takes() -> None:
    fields = form_fields(ORDER)
    posted = {
        "$.quantity": " 3 ",
        "$.colour": '"blue"',
        "$.note": "",
        "$.express": "true",
        "$.tags": "gift\n\n fragile \n",
        "$.address.city": "",
        "$.address.postcode": "",
    }
    assert form_answer(ORDER, fields, posted) == {
        "quantity": 3,
        "colour": "blue",
        "express": True,
        "tags": ["gift", "fragile"],
    }  # empty optional fields and an empty optional group are left out
    posted |= {"$.address.city": "Lyon", "$.tags": "", "$.note": "ring twice"}
    assert form_answer(ORDER, fields, posted) == {
        "quantity": 3,
        "colour": "blue",
        "note": "ring twice",
        "express": True,
        "address": {"city": "Lyon"},
    }
    assert Order.model_validate(form_answer(ORDER, fields, posted)).address is not None


def test_a_required_optional_field_left_empty_is_null() -> None:
    schema = {
        "type": "object",
        "properties": {"why": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
        "required": ["why"],
    }
    assert form_answer(schema, form_fields(schema), {"$.why": ""}) == {"why": None}
    number = {"type": "number"}
    assert form_answer(number, form_fields(number), {"$": "2.5"}) == 2.5
    assert form_answer(number, form_fields(number), {"$": "7"}) == 7


def test_each_problem_is_beside_its_field() -> None:
    fields = form_fields(ORDER)
    posted = {"$.quantity": "many", "$.colour": '"pink"', "$.address.postcode": "69001"}
    with pytest.raises(FormInvalid) as caught:
        form_answer(ORDER, fields, posted)
    problems = caught.value.problems
    assert problems.fields == {
        "$.quantity": ["should be a whole number, such as 42, not 'many'"],
        "$.colour": ["should be one of red, green, blue, not '\"pink\"'"],
        "$.address.city": ["is required"],  # the group was started, so it is checked
    }
    assert problems.general == []
    assert "3 problems" in str(caught.value)

    with pytest.raises(FormInvalid) as caught:
        form_answer(ORDER, fields, {"$.quantity": "0", "$.colour": '"red"', "$.tags": "a\nb"})
    assert caught.value.problems.fields == {"$.quantity": ["should be at least 1, got 0"]}

    listed = {
        "type": "object",
        "properties": {"n": {"type": "array", "items": {"type": "integer", "maximum": 5}}},
    }
    with pytest.raises(FormInvalid) as caught:
        form_answer(listed, form_fields(listed), {"$.n": "1\nseven\n9"})
    assert caught.value.problems.fields == {
        "$.n": ["line 2: should be a whole number, such as 42, not 'seven'"]
    }
    with pytest.raises(FormInvalid) as caught:
        form_answer(listed, form_fields(listed), {"$.n": "1\n9"})
    assert caught.value.problems.fields == {"$.n": ["item 2: should be at most 5, got 9"]}


def test_a_json_box_that_is_not_json_says_so_beside_it() -> None:
    schema = {"type": "object", "properties": {"extra": {}}, "required": ["extra"]}
    with pytest.raises(FormInvalid) as caught:
        form_answer(schema, form_fields(schema), {"$.extra": "{nope"})
    [message] = caught.value.problems.fields["$.extra"]
    assert message.startswith("is not valid JSON")
    assert form_answer(schema, form_fields(schema), {"$.extra": '{"a": [1]}'}) == {
        "extra": {"a": [1]}
    }


async def test_the_send_paths_refusal_is_placed_beside_the_fields_too() -> None:
    class Refusing:
        async def send_message(self, run_id: str, name: str, data: Any) -> None:
            raise PayloadInvalid([Violation("$.quantity", "is taken"), Violation("$", "no")])

    target = Answerable("r", "order", None, "message", "order", "order", ORDER)
    with pytest.raises(FormInvalid) as caught:
        await send_answer(Refusing(), target, {"quantity": 1})  # type: ignore[arg-type]
    assert caught.value.problems.fields == {"$.quantity": ["is taken"]}
    assert caught.value.problems.general == ["no"]


# -- through the dashboard, on both stores ---------------------------------------------


@pytest.fixture
async def served(
    make_app: Callable[..., tarry.App],
) -> AsyncIterator[tuple[tarry.App, httpx.AsyncClient]]:
    app = register_people(make_app(public_url="https://flows.example.com"))
    async with app.worker(), asgi_client(app) as client:
        yield app, client


async def test_a_schema_form_refuses_keeps_what_was_typed_then_resumes_with_the_model(
    served: tuple[tarry.App, httpx.AsyncClient],
) -> None:
    app, client = served
    run_id = await app.start("typed-order", {"timeout": "1h"})
    await wait_run(client, run_id, "waiting")
    page = (await client.get(f"/runs/{run_id}")).text
    assert 'name="$.quantity"' in page and 'name="$.address.city"' in page
    assert "Approve" not in page and 'name="data"' not in page
    form = {
        "csrf": csrf_of(page),
        "step": "order",
        "cond": "",
        "decision": "form",
        "$.quantity": "250",
        "$.colour": '"green"',
        "$.note": "left at the door",
        "$.tags": "gift",
    }
    refused = await client.post(f"/runs/{run_id}/decide", data=form)
    assert refused.status_code == 422
    html = refused.text
    field = re.search(r'data-path="\$\.quantity">(.*?)</div>', html, re.S)
    assert field is not None and "should be at most 100, got 250" in field.group(1)
    assert 'value="250"' in field.group(1) and 'aria-invalid="true"' in field.group(1)
    assert 'value="left at the door"' in html and ">gift</textarea>" in html
    assert '<option value="&#34;green&#34;" selected>' in html
    assert (await app.get_run(run_id)).status == "waiting"

    form["$.quantity"] = "25"
    sent = await client.post(f"/runs/{run_id}/decide", data=form)
    assert sent.status_code == 303 and sent.headers["location"].endswith("notice=message")
    run = await wait_run(client, run_id, "completed")
    assert run["output"] == {
        "type": "Order",
        "order": {
            "quantity": 25,
            "colour": "green",
            "note": "left at the door",
            "express": False,
            "tags": ["gift"],
            "address": None,
        },
    }


async def test_approve_only_where_the_wait_is_the_approval_shape(
    served: tuple[tarry.App, httpx.AsyncClient],
) -> None:
    app, client = served
    approval = await app.start("typed-approval", {"id": "a-1"})
    reply = await app.start("typed-reply", {})
    await wait_run(client, approval, "waiting")
    await wait_run(client, reply, "waiting")

    page = (await client.get(f"/runs/{reply}")).text
    assert "Approve" not in page and re.search(r'<textarea id="[^"]+" name="\$\.text"', page)
    # an old page's Approve is refused for a wait that expects a text: nothing sent
    refused = await client.post(
        f"/runs/{reply}/decide", data={"csrf": csrf_of(page), "decision": "approve", "by": "x"}
    )
    assert refused.status_code == 400 and "expects its own form" in refused.text
    assert (await app.get_run(reply)).status == "waiting"
    answered = await client.post(
        f"/runs/{reply}/decide",
        data={"csrf": csrf_of(page), "step": "reply", "decision": "form", "$.text": "Yes, go"},
    )
    assert answered.status_code == 303
    assert (await wait_run(client, reply, "completed"))["output"] == {
        "type": "Reply",
        "text": "Yes, go",
    }

    page = (await client.get(f"/runs/{approval}")).text
    assert re.search(r'value="approve"[^>]*>Approve', page) and 'name="$.by"' not in page
    sent = await client.post(
        f"/runs/{approval}/decide",
        data={"csrf": csrf_of(page), "step": "approve", "decision": "reject", "by": "ann",
              "comment": "too dear"},
    )  # fmt: skip
    assert sent.status_code == 303
    run = await wait_run(client, approval, "completed")
    assert run["output"] == {
        "type": "Approval",
        "decision": {"approved": False, "by": "ann", "comment": "too dear"},
    }


async def test_a_tokens_page_shows_the_schema_form_and_posting_it_completes_the_token(
    served: tuple[tarry.App, httpx.AsyncClient],
) -> None:
    app, client = served
    run_id = await app.start("typed-token", {})
    await wait_run(client, run_id, "waiting")
    url = (await app.get_run(run_id)).steps[1].output
    link = urlsplit(url)
    page = await client.get(f"{link.path}?{link.query}")
    assert page.status_code == 200 and 'name="$.colour"' in page.text
    action = re.search(r'<form method="post" action="([^"]+)" id="token-form"', page.text)
    assert action is not None
    target = action.group(1).replace("&amp;", "&")
    token_id = link.path.rsplit("/", 1)[1]
    assert target == f"/tokens/{token_id}/answer?{link.query}"
    assert (await app.get_token(token_id)).state == "pending"  # showing it changed nothing

    form = {
        "csrf": csrf_of(page.text),
        "decision": "form",
        "$.quantity": "two",
        "$.colour": '"red"',
    }
    refused = await client.post(target, data=form)
    assert refused.status_code == 422 and "should be a whole number" in refused.text
    assert 'value="two"' in refused.text
    forged = await client.post(target.replace("sig=", "sig=x"), data=form)
    assert forged.status_code == 401
    stale = await client.post(target, data={**form, "csrf": "old"})
    assert stale.status_code == 403 and 'value="two"' in stale.text

    form["$.quantity"] = "2"
    done = await client.post(target, data=form)
    assert done.status_code == 200 and "your answer was recorded" in done.text
    run = await wait_run(client, run_id, "completed")
    assert run["output"]["type"] == "Order" and run["output"]["order"]["quantity"] == 2
    again = await client.post(target, data=form)
    assert again.status_code == 409 and "first completion stands" in again.text
