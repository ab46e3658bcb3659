"""Callback tokens as steps: ``create_token`` and ``wait_for_token``.

A token is made by a step, so a replay returns the same token (its id, signature
and expiry come from the step's record; its URL is built again from the App's
``public_url``). Waiting for it is a wait like any other, whose deadline is the
token's expiry; a token completed before its wait answers that wait at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from . import conditions, serde
from .durations import Timeout
from .errors import LeaseLost, StoreUnavailable
from .models import Token
from .step_core import StepCore
from .store.base import StepRow
from .store.token_records import NewToken
from .tokens import DEFAULT_PUBLIC_URL, current, new_secret, new_token_id, sign, token_url
from .wait_schema import WaitSchema, wait_schema


class TokenSteps(StepCore):
    """The token step methods (mixed into ``Step``)."""

    async def create_token(self, step_id: str, *, timeout: Timeout, schema: object = None) -> Token:
        """A callback token: its ``id`` completes it from code (``app.complete_token``),
        its ``url`` from anywhere, with no API token (``POST`` JSON; a ``GET`` shows a
        confirmation page). It completes once, and expires after ``timeout`` (a
        duration, an aware datetime, or None: when the run ends). ``schema`` (a pydantic
        model or a JSON Schema dict) is what a completion must fit."""
        shape = wait_schema(schema, what=f"create_token {step_id!r} schema=")
        due = self._deadline(timeout)
        key = self._key(step_id)
        row = await self._memo(key, "create_token")
        if row is not None and row.status == "completed":
            return self._token(row.output, shape)
        await self._x.boundary()
        token_id = new_token_id()
        now = self._x.clock.now()
        store = self._x.store
        self._x.branches.enter()  # writes siblings must not park the run under
        try:
            secret = current(await store.token_secrets(new_secret()))
            output = orjson.dumps(
                {"id": token_id, "name": step_id, "expires_at": due, "run_id": self._x.run.id,
                 "sig": sign(secret, token_id, due)}
            )  # fmt: skip
            step = StepRow(key, "create_token", "completed", output, None, 1, now, now,
                           self._pos[key])  # fmt: skip
            new = NewToken(token_id, step_id, due, None if shape is None else shape.encoded)
            cancel = await store.create_token(self._x.lease, new, step)
        except (LeaseLost, StoreUnavailable) as exc:
            raise self._x.stop(exc) from None
        finally:
            self._x.branches.leave()
        self._x.remember(step)
        if cancel:
            self._x.request_cancel()
        return self._token(output, shape)

    def _token(self, output: bytes | None, shape: WaitSchema | None) -> Token:
        made = serde.loads(output)
        expires = made["expires_at"]
        return Token(
            made["id"],
            token_url(self._x.settings.public_url or DEFAULT_PUBLIC_URL, made["id"], made["sig"]),
            None if expires is None else datetime.fromtimestamp(expires, UTC),
            made["name"],
            made["run_id"],
            shape,
        )

    async def wait_for_token(self, token: Token, *, step_id: str | None = None) -> Any:
        """Park until ``token`` is completed: its data (the schema's model instance when
        the token was created with a pydantic model), or None when the token expires.
        A completion that came before this wait answers it at once. The step id is
        ``wait:<token name>`` unless ``step_id`` is given."""
        if not isinstance(token, Token):
            raise TypeError(
                f"wait_for_token takes the Token that step.create_token returned, got {token!r}"
            )
        if token.run_id != self._x.run.id:
            raise ValueError(
                f"token {token.name!r} belongs to run {token.run_id!r}; a run waits only for "
                "its own tokens (a fork copies the token of the run it came from: fork "
                "from the create_token step to make a new one)"
            )
        spec = conditions.token(token)
        due = None if token.expires_at is None else token.expires_at.timestamp()
        found = await self._wait(
            step_id if step_id is not None else f"wait:{token.name}", "token", due,
            lambda: (self._condition(spec),), spec=conditions.describe(spec),
        )  # fmt: skip
        return None if found is None else conditions.typed_value(spec, found)
