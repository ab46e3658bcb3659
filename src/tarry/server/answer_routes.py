"""The forms that answer a wait: from a run's page or the inbox (``/runs/{id}/decide``),
and from a callback token's confirmation page (``/tokens/{id}/answer?sig=``).

Each answer is made from the form (``answers.answer_of``), checked against the
wait's schema, and sent through the App, which checks it again where it is
delivered. A form that does not make an answer comes back (422) with what it held
and each problem beside its field; one that does answers with a 303 to the page
that shows the outcome (the token's page is shown at once, as its own form does).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..app import App
from ..errors import RunNotFound, TarryError, TokenNotFound, TokenSignatureInvalid
from ..models import TokenInfo
from ..tokens import TOKEN_PATH
from ..wait_schema import is_approval
from .answers import (
    Answerable,
    AnswerState,
    answer_of,
    chosen,
    posted,
    run_answerables,
    send_answer,
)
from .auth import Guard
from .inbox import inbox_response
from .pages import BadInput, deps, missing_run, read_post, redirect_to, status_of, store_of
from .render import pretty, render
from .run_page import run_page_response
from .schema_form import FormInvalid, Problems

router = APIRouter(include_in_schema=False)


@router.post("/runs/{run_id:path}/decide")
async def decide(request: Request, run_id: str) -> Response:
    """Answer a wait of the run: the one the form names (``step``, ``cond``), or the
    run's first when it names none. ``back=inbox`` comes back to the inbox."""
    session, form, gate = await read_post(request)
    if gate is not None:
        return gate
    app = deps(request)[0]
    values = posted(form)
    to_inbox = values.get("back") == "inbox"
    target: Answerable | None = None
    try:
        target = await _target(request, app, run_id, values)
        data = answer_of(target, values)
        notice = await send_answer(app, target, data, values.get("name", "").strip())
    except RunNotFound:
        return missing_run(request, session, run_id)
    except FormInvalid as exc:
        error, status, problems = str(exc), 422, exc.problems
    except (TarryError, ValueError) as exc:
        error, status, problems = str(exc), status_of(exc), Problems()
    else:
        if to_inbox:
            return redirect_to(request, session, f"/inbox?notice={notice}")
        return redirect_to(request, session, f"/runs/{quote(run_id, safe='')}?notice={notice}")
    state = AnswerState(target.form_id if target else "", values, problems)
    if to_inbox:
        return await inbox_response(request, session, error=error, status=status, answer=state)
    return await run_page_response(
        request, session, run_id, error=error, status=status, form=form, answer=state
    )


async def _target(request: Request, app: App, run_id: str, values: dict[str, str]) -> Answerable:
    run = await app.get_run(run_id)
    detail = await (await store_of(request)).run_detail(run_id)
    found = run_answerables(run, detail)
    target = chosen(found, values.get("step", ""), values.get("cond", ""))
    if target is not None:
        return target
    waiting = run.waiting_for
    if run.status != "waiting" or waiting is None:
        raise BadInput(f"run {run_id} is {run.status} and waits for nothing: nothing was sent")
    if values.get("step"):
        raise BadInput(
            f"run {run_id} no longer waits at step {values['step']!r} for what this form "
            "answers: nothing was sent"
        )
    raise BadInput(f"this run waits on {waiting.kind}; send it from the events page or the API")


# -- a callback token's confirmation page ---------------------------------------------


@router.post("/tokens/{token_id}/answer")
async def answer_token(request: Request, token_id: str, sig: str = "") -> Response:
    """The schema's form on a token's confirmation page (``token_form.html``). No login:
    the link's signature is the credential, as on the page itself; the form carries
    the session's CSRF token."""
    app: App = request.app.state.tarry
    guard: Guard = request.app.state.guard
    await guard.ready(app)
    session = guard.session(request)
    form = await request.form()
    values = {k: v for k, v in posted(form).items() if k != "csrf"}
    try:
        info = await app.get_token(token_id, signature=sig[:128])
    except TokenNotFound:
        missing = "There is no such request: the link may be mistyped, or it was removed."
        return _token_page(request, guard, session, None, sig, 404, error=missing)
    except TokenSignatureInvalid as exc:
        return _token_page(request, guard, session, None, sig, 401, error=str(exc))
    target = Answerable(info.run_id, "", None, "token", info.id, info.name, info.schema)
    form_id = "token-answer"  # the one form of token_form.html that posts here
    if not guard.csrf_ok(session, form.get("csrf")):
        error = (
            "This form was not sent: the page was too old, or opened in another browser. "
            "Nothing was recorded; check what it held and send it again."
        )
        state = AnswerState(form_id, values)
        return _token_page(request, guard, session, info, sig, 403, error=error, answer=state)
    try:
        await send_answer(app, target, answer_of(target, values))
    except FormInvalid as exc:
        state = AnswerState(form_id, values, exc.problems)
        return _token_page(request, guard, session, info, sig, 422, error=str(exc), answer=state)
    except (TarryError, ValueError) as exc:
        fresh = await app.get_token(token_id)
        state = AnswerState(form_id, values)
        status, error = status_of(exc), str(exc)
        return _token_page(request, guard, session, fresh, sig, status, error=error, answer=state)
    done = await app.get_token(token_id)
    notice = "Thank you: your answer was recorded."
    return _token_page(request, guard, session, done, sig, 200, notice=notice)


def _token_page(
    request: Request,
    guard: Guard,
    session: Any,
    info: TokenInfo | None,
    sig: str,
    status: int,
    *,
    error: str | None = None,
    notice: str | None = None,
    answer: AnswerState | None = None,
) -> Response:
    """token.html as the token's own page renders it, with the schema form's state."""
    link = f"{TOKEN_PATH}{quote(info.id if info else '', safe='')}?sig={quote(sig, safe='')}"
    response = render(
        "token.html",
        status,
        info=info,
        action=link,
        approval=info is not None and is_approval(info.schema),
        schema_text=None if info is None or info.schema is None else pretty(info.schema),
        error=error,
        notice=notice,
        kept={},
        answer_state=answer,
        sig=sig,
        csrf=session.csrf,
        auth_on=False,
        path=request.url.path,
    )
    response.headers.update({"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})
    guard.store(session, request, response)
    return response
