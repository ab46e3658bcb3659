"""The App's callback token methods: complete one, read one (checking a link's
signature), rotate the secret that signs links.

A mixin of ``App`` (which supplies ``_open``, ``settings`` and ``clock``), as
``reads.py`` is.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from . import serde, tracing
from .clock import Clock
from .durations import Duration, parse_duration
from .errors import (
    TokenAlreadyUsed,
    TokenExpired,
    TokenNotFound,
    TokenRunEnded,
    TokenSignatureInvalid,
)
from .models import ENDED_STATUSES, TokenInfo, TokenState, to_datetime
from .names import check_name
from .sends import answer_json
from .settings import Settings
from .store.base import Store
from .store.token_records import TokenRow
from .tokens import check_public_url, new_secret, signed


class TokenClient:
    """What the client does with callback tokens (mixed into ``App``)."""

    settings: Settings
    clock: Clock

    async def _open(self) -> Store:
        raise NotImplementedError

    async def complete_token(self, token_id: str, data: Any) -> str:
        """Complete the callback token ``token_id`` with ``data``: the run's wait on it
        returns ``data`` (at once if parked, else when it gets there). Returns the id of
        the token's run. Once only: ``TokenAlreadyUsed`` if it was completed before
        (the first completion stands), ``TokenExpired`` past its timeout,
        ``TokenRunEnded`` once its run has ended or is being cancelled,
        ``TokenNotFound`` for an unknown id, ``PayloadInvalid`` for data that does not
        fit the token's schema; in each case nothing is stored."""
        check_name(token_id, "token id")
        payload = answer_json(
            data, "token", f"token {token_id!r}", "when the token expires",
            self.settings.max_output_bytes,
        )  # fmt: skip
        store = await self._open()
        with tracing.sending("complete_token", token=token_id) as trace:
            outcome = await store.complete_token(token_id, payload, trace=trace)
        if outcome.status == "not_found":
            raise TokenNotFound(f"no callback token {token_id!r}: nothing was stored")
        if outcome.status == "used":
            when = to_datetime(outcome.at)
            assert when is not None
            raise TokenAlreadyUsed(
                f"callback token {token_id!r} was completed at {when:%Y-%m-%d %H:%M:%S} UTC; "
                "a token completes once and the first completion stands: nothing was stored"
            )
        if outcome.status == "expired":
            raise TokenExpired(
                f"callback token {token_id!r} has expired, and its wait with it: nothing was stored"
            )
        if outcome.status == "ended":
            raise TokenRunEnded(
                f"run {outcome.run_id!r}, which callback token {token_id!r} belongs to, has "
                "ended or is being cancelled: nothing was stored"
            )
        assert outcome.run_id is not None
        return outcome.run_id

    async def get_token(self, token_id: str, *, signature: str | None = None) -> TokenInfo:
        """What the callback token is for and where it stands. With ``signature`` (a
        link's ``sig``), ``TokenSignatureInvalid`` unless it is the token's, signed
        with the current secret or one rotated out less than its grace period ago.
        ``TokenNotFound`` for an unknown id."""
        check_name(token_id, "token id")
        store = await self._open()
        row = await store.get_token(token_id)
        if row is None:
            raise TokenNotFound(f"no callback token {token_id!r}")
        if signature is not None:
            found = await store.token_secrets(new_secret())
            if not signed(found, row.id, row.expires_at, signature, self.clock.now()):
                raise TokenSignatureInvalid()
        return self._token_info(row)

    def _token_info(self, row: TokenRow) -> TokenInfo:
        state: TokenState
        if row.completed_at is not None:
            state = "completed"
        elif row.run_status in ENDED_STATUSES or row.cancel_requested:
            state = "ended"
        elif row.expires_at is not None and row.expires_at <= self.clock.now():
            state = "expired"
        else:
            state = "pending"
        return TokenInfo(
            row.id, row.name, row.run_id, row.workflow, state,
            to_datetime(row.created_at),  # type: ignore[arg-type]
            to_datetime(row.expires_at), to_datetime(row.completed_at),
            None if row.data is None else serde.loads(row.data),
            None if row.schema is None else serde.loads(row.schema),
        )  # fmt: skip

    async def rotate_token_secret(self, *, grace: Duration = "7d") -> None:
        """Sign new token links with a fresh secret. Links signed before stay valid for
        ``grace`` (the tokens' own expiry still applies), then fail with 401: rotate
        when a secret may have leaked, with ``grace=0`` to end the old links now."""
        seconds = parse_duration(grace)
        store = await self._open()
        await store.rotate_token_secret(new_secret(), seconds)

    def serve_at(self, url: str) -> None:
        """The address a server listens on, for token links when neither
        ``App(public_url=)`` nor ``$TARRY_PUBLIC_URL`` said where (``tarry serve``)."""
        if self.settings.public_url is None:
            self.settings = replace(self.settings, public_url=check_public_url(url))
