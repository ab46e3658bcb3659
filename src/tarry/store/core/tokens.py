"""Callback tokens in the store: creating one with its step, completing one, the
secrets that sign their links.

A token is a row beside its run. A completion is one transaction under the token's
lock: it is refused (nothing stored) for a token already completed, expired, or
whose run has ended or is being cancelled, and for data that does not fit the
token's schema; otherwise the data is stored on the token and, when the run is
parked on it, delivered to that wait in the same transaction. A wait that parks
later takes the same lock and finds the data on the token (``completed_data``), so
a completion that comes first is never lost, and two completions at once queue on
the lock: the first stands, the second finds it used.

A token's expiry is its wait's deadline, which the run's ``due_at`` carries: no
poller looks at tokens.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

import orjson

from ...errors import PayloadInvalid
from ...models import ENDED_STATUSES
from ...wait_schema import validate
from ..base import Lease, StepRow
from ..token_records import NewToken, TokenOutcome, TokenRow, TokenSecret, TokenWait
from .fence import fence, upsert_step
from .port import Tx
from .waiters import resolve_wait

T = TypeVar("T")

SECRETS_LOCK = ""
"""The ``token`` lock key that orders changes to the signing secrets."""


def _token_row(row: tuple[Any, ...]) -> TokenRow:
    return TokenRow(
        row[0], row[1], row[2], row[3], None if row[4] is None else bytes(row[4]), row[5],
        row[6], row[7], None if row[8] is None else bytes(row[8]), row[9], row[10],
        bool(row[11]),
    )  # fmt: skip


async def token_secrets(tx: Tx, offer: str) -> list[TokenSecret]:
    """The secrets valid now, the current one first; ``offer`` becomes the current
    one when there is none (the first token of a store)."""
    found = await _valid_secrets(tx)
    if any(s.valid_until is None for s in found):
        return found
    await tx.lock("token", SECRETS_LOCK)
    found = await _valid_secrets(tx)  # another process may have stored one meanwhile
    if not any(s.valid_until is None for s in found):
        await tx.run("insert_token_secret", {"value": offer, "now": tx.now})
        found = await _valid_secrets(tx)
    return found


async def _valid_secrets(tx: Tx) -> list[TokenSecret]:
    rows = await tx.all("token_secrets", {"now": tx.now})
    found = [TokenSecret(str(r[0]), float(r[1]), r[2]) for r in rows]
    return sorted(found, key=lambda s: (s.valid_until is not None, -s.created_at))


async def rotate_token_secret(tx: Tx, new: str, grace_seconds: float) -> None:
    """``new`` signs links from now on; the one it replaces still verifies for
    ``grace_seconds``; secrets past their grace are forgotten."""
    await tx.lock("token", SECRETS_LOCK)
    await tx.run("retire_token_secret", {"until": tx.now + grace_seconds})
    await tx.run("insert_token_secret", {"value": new, "now": tx.now})
    await tx.run("forget_token_secrets", {"now": tx.now})


async def create_token(tx: Tx, lease: Lease, token: NewToken, step: StepRow) -> bool:
    """Store the token with the step that created it (fenced by ``lease``); whether
    the run's cancellation was requested."""
    cancel_requested = await fence(tx, lease)
    params = {"id": token.id, "run_id": lease.run_id, "step_key": step.key, "name": token.name,
              "schema": token.schema, "now": tx.now, "expires_at": token.expires_at}  # fmt: skip
    await tx.run("insert_token", params)  # already there: a commit that went unanswered
    await upsert_step(tx, lease.run_id, step)
    return cancel_requested


async def get_token(tx: Tx, token_id: str) -> TokenRow | None:
    row = await tx.one("select_token", {"id": token_id})
    return None if row is None else _token_row(row)


async def complete_token(
    tx: Tx, token_id: str, data: bytes, trace: str | None = None
) -> TokenOutcome:
    await tx.lock("token", token_id)
    found = await get_token(tx, token_id)
    if found is None:
        return TokenOutcome("not_found")
    run_id = found.run_id
    if found.completed_at is not None:
        return TokenOutcome("used", run_id, found.completed_at)
    run = await tx.one("lock_run", {"id": run_id})  # runs before waiters, as everywhere
    if run is None or run[3] in ENDED_STATUSES or run[12]:
        return TokenOutcome("ended", run_id)
    if found.expires_at is not None and found.expires_at <= tx.now:
        return TokenOutcome("expired", run_id)
    if found.schema is not None:
        errors = validate(found.schema, orjson.loads(data))
        if errors:
            raise PayloadInvalid(errors, f"the data for token {found.name!r}")
    await tx.run("complete_token", {"id": token_id, "data": data, "now": tx.now})
    for waiter_id, waiting_run, step_key, index in await tx.all(
        "token_waiters", {"key": token_id, "run_id": run_id}
    ):
        if await tx.one("lock_waiter", {"id": waiter_id}) is None:
            continue  # the same step's other waiter for it went with the first
        await resolve_wait(tx, waiting_run, step_key, "completed", data, None, index, trace)
    return TokenOutcome("completed", run_id, tx.now)


async def completed_data(tx: Tx, cond: TokenWait) -> bytes | None:
    """The data of the token if it was completed (a park holds its lock): a wait on a
    token completed before it answers at once."""
    row = await tx.one("token_data", {"id": cond.token_id})
    return None if row is None else bytes(row[0])


Body = Callable[[Tx], Coroutine[Any, Any, T]]


class TokenStore:
    """The store's token methods (mixed into ``CoreStore``), one transaction each."""

    @abstractmethod
    def _transact(self, body: Body[T], *, idempotent: bool = True) -> Awaitable[T]: ...

    async def token_secrets(self, offer: str) -> list[TokenSecret]:
        return await self._transact(partial(token_secrets, offer=offer))

    async def rotate_token_secret(self, new: str, grace_seconds: float) -> None:
        await self._transact(partial(rotate_token_secret, new=new, grace_seconds=grace_seconds))

    async def create_token(self, lease: Lease, token: NewToken, step: StepRow) -> bool:
        return await self._transact(partial(create_token, lease=lease, token=token, step=step))

    async def get_token(self, token_id: str) -> TokenRow | None:
        return await self._transact(partial(get_token, token_id=token_id))

    async def complete_token(
        self, token_id: str, data: bytes, *, trace: str | None = None
    ) -> TokenOutcome:
        # Repeated after a commit that went unanswered, it would find its own
        # completion and answer "used": the caller could not tell it had won.
        body = partial(complete_token, token_id=token_id, data=data, trace=trace)
        return await self._transact(body, idempotent=False)
