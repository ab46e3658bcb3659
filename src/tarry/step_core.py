"""What every step method shares: keys, the memo, saving, and the wait path.

``StepCore`` keeps a run's bookkeeping during one replay: the key of each step
(the n-th repeat of an id is ``id:n``), its place in the run, the memo lookup
with its limits and its guard against code that changed under the run, and the
one path by which every wait parks. ``Step`` (step.py) builds the public step
methods on it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any, NoReturn

import orjson

from . import conditions, serde
from .attempt import Attempt
from .conditions import AnyCondition
from .durations import Timeout, deadline
from .errors import (
    ExpressionError,
    LeaseLost,
    NestedStepError,
    NonDeterminismError,
    SignalConflict,
    StepFailed,
    StoreUnavailable,
    Suspend,
)
from .models import StepKind, WaitKind
from .names import check_name
from .store.base import StepRow, WaitCondition, WaitSpec
from .tracebacks import format_bounded


def error_bytes(exc: BaseException | str, kind: str | None = None) -> bytes:
    message = exc if isinstance(exc, str) else str(exc) or type(exc).__name__
    name = kind or (type(exc).__name__ if isinstance(exc, BaseException) else "Error")
    return orjson.dumps({"type": name, "message": message})


def attempt_error(exc: BaseException) -> bytes:
    """A failed attempt as stored: its error with its traceback."""
    message = str(exc) or type(exc).__name__
    return orjson.dumps(
        {"type": type(exc).__name__, "message": message, "traceback": format_bounded(exc)}
    )


def error_message(row: StepRow) -> tuple[str, str]:
    info = serde.loads(row.error) or {}
    return str(info.get("type", "Error")), str(info.get("message", "step failed"))


def _spell(step_id: str, repeat: int) -> str:
    """The key of the ``repeat``-th use of ``step_id`` in a run: ``id``, ``id:1``, ..."""
    return step_id if repeat == 0 else f"{step_id}:{repeat}"


INSIDE_STEP: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tarry_inside_step", default=None
)
"""The key of the ``step.run`` whose function is executing here, if any."""


def refuse_nested(step_id: object) -> None:
    """A step method called from inside a step function: refused, naming both."""
    outer = INSIDE_STEP.get()
    if outer is not None:
        raise NestedStepError(
            f"step {step_id!r} was called from inside the function of step {outer!r}; "
            "steps cannot nest: call it from the workflow handler, after or beside "
            f"{outer!r} (asyncio.gather runs steps side by side)"
        )


PATCH_PREFIX = "@patch:"
"""The key of a patch marker: ``@patch:<id>``."""


class StepCore:
    """One replay's bookkeeping, shared by every step method (see the module)."""

    def __init__(self, attempt: Attempt) -> None:
        self._x = attempt
        self._seen: dict[str, int] = {}
        self._count = 0
        self._pos: dict[str, int] = {}
        """Each key's place in the run: the n-th step the handler reached."""
        self._patches: set[str] = set()
        """Patch marker keys this replay has passed (``patched``, ``deprecate_patch``)."""

    # -- bookkeeping ---------------------------------------------------------------

    def _key(self, step_id: str) -> str:
        refuse_nested(step_id)
        self._x.branches.track()
        seen = self._seen.get(step_id) if type(step_id) is str else None
        if seen is None:  # a repeat (a loop) was checked the first time
            check_name(step_id, "step id")
            seen = 0
        key = _spell(step_id, seen)
        self._seen[step_id] = seen + 1
        self._count += 1
        self._pos[key] = self._count
        return key

    async def _memo(self, key: str, kind: StepKind) -> StepRow | None:
        if self._count > self._x.settings.max_steps:
            message = (
                f"the run reached step {key!r}, past its limit of {self._x.settings.max_steps:,} "
                "steps (App(max_steps=...)); a loop that never ends, or a workflow that "
                "should start child runs with step.invoke"
            )
            await self._x.end("failed", error=error_bytes(message, "StepLimitExceeded"))
            raise Suspend("step limit")
        row = self._x.memo.get(key)
        limit = self._x.settings.max_history_bytes
        if row is None and self._x.history_bytes > limit:
            message = (
                f"the run reached step {key!r} with {self._x.history_bytes:,} bytes of step "
                f"results stored, past its limit of {limit:,} (App(max_history_bytes=...)); "
                "keep large data outside tarry and pass references, or split the work into "
                "child runs with step.invoke"
            )
            await self._x.end("failed", error=error_bytes(message, "HistoryLimitExceeded"))
            raise Suspend("history limit")
        if row is not None and row.kind != kind:
            message = (
                f"step {key!r} was stored as a {row.kind!r} step but the workflow code now "
                f"asks for a {kind!r} step there; the code changed under a run in flight"
            )
            await self._x.end("failed", error=error_bytes(message, "NonDeterminismError"))
            raise NonDeterminismError(message)
        return row

    async def _save(self, row: StepRow) -> None:
        try:
            cancel = await self._x.store.save_step(self._x.lease, row)
        except (LeaseLost, StoreUnavailable) as exc:
            raise self._x.stop(exc) from None
        self._x.remember(row)
        if cancel:
            self._x.request_cancel()

    def _peek_key(self, step_id: str) -> str:
        """The key the next call with ``step_id`` will get, without taking it."""
        return _spell(step_id, self._seen.get(step_id, 0) if isinstance(step_id, str) else 0)

    def _deadline(self, timeout: Timeout) -> float | None:
        return deadline(timeout, self._x.clock.now())

    def _condition(self, spec: AnyCondition) -> WaitCondition:
        x = self._x
        return conditions.to_wait(spec, x.trigger, x.run.created_at, x.clock.now(), x.memo)

    # -- the shared wait path ----------------------------------------------------------

    async def _wait(
        self,
        step_id: str,
        kind: WaitKind,
        due: float | None,
        build: Callable[[], tuple[WaitCondition, ...]],
        *,
        indexed: bool = False,
        spec: str | None = None,
        need: int | None = None,
    ) -> Any:
        """Answer from the memo, else park on the conditions ``build`` makes: built only
        then, since a condition may read the whole memo (the events already seen), and
        a replay must not pay that for every wait it passes. ``spec`` describes what
        the code waits on; a stored wait that waited on something else fails the run
        rather than resume it into a different wait."""
        key = self._key(step_id)
        row = await self._memo(key, kind)
        if row is not None and spec is not None and row.spec is not None and row.spec != spec:
            await self._diverged(key, row.spec, spec)
        x = self._x
        if row is not None and row.status != "waiting":
            if not x.resume_told and (row.ended_at or 0.0) >= x.latest_end > 0.0:
                x.told_resumed(key, row)  # the wait this run was parked on
            return self._answer(key, row)
        await x.boundary()
        conds = build()
        waiting_for: dict[str, Any] = {
            "kind": kind,
            "step": key,
            "key": conditions.waiting_key(conds),
            "expires_at": due,
        }
        if len(conds) > 1:
            waiting_for["conditions"] = [conditions.shown(c) for c in conds]
        wait = WaitSpec(
            key,
            kind,
            due,
            orjson.dumps(waiting_for),
            conds,
            indexed,
            self._x.clock.now(),
            self._pos[key],
            spec,
            need,
        )
        parked = await self._x.branches.park(wait, stored=row is not None)
        assert parked.step is not None
        if x.woken_from is not None:  # asleep here since it parked, now woken
            x.told_resumed(key, parked.step)
        self._x.remember(parked.step)
        return self._answer(key, parked.step)

    async def _diverged(self, key: str, stored: str, now: str) -> NoReturn:
        """A stored wait meets a different wait in the code: fail the run, naming both
        and the versions, rather than resume it into a wait it never parked on."""
        run = self._x.run
        was = run.last_version or run.version or "unknown"
        message = (
            f"step {key!r} waited on {stored} when the run parked (code version {was}), "
            f"but the code now (version {self._x.version or 'unknown'}) waits on {now} "
            "there; the run cannot resume into a different wait. Keep the old wait for "
            "runs parked on it (step.patched), or cancel such runs and fork them"
        )
        await self._x.end("failed", error=error_bytes(message, "NonDeterminismError"))
        raise NonDeterminismError(message)

    def unvisited(self) -> list[str]:
        """Stored steps this replay has not reached (patch markers aside)."""
        return [
            key
            for key in self._x.memo
            if key not in self._pos and not key.startswith(PATCH_PREFIX)
            and key not in self._patches
        ]  # fmt: skip

    def _answer(self, key: str, row: StepRow) -> Any:
        if row.status in ("completed", "timed_out", "cancelled"):
            return serde.loads(row.output)
        kind, message = error_message(row)
        if kind == "SignalConflict":
            raise SignalConflict(message)
        if kind == "ExpressionError":
            raise ExpressionError(message)
        raise StepFailed(key, message)

    # -- changing code under parked runs ------------------------------------------------

    async def patched(self, patch_id: str) -> bool:
        """Whether this run takes the new code at this point: True for a run that
        reaches it for the first time under code that has the patch (recorded, so its
        later replays answer True too), False for a run whose stored history already
        went past it without the patch. Use it to change code between steps while
        runs are parked: ``if await step.patched("v2-fraud-check"): ...``."""
        key = self._patch_key(patch_id)
        self._patches.add(key)
        if key in self._x.memo:
            self._count += 1  # a marker takes a place, in every replay that passes it
            return True
        if self.unvisited():
            return False  # the stored history goes on past this point without the patch
        self._count += 1
        if not self._x.dry:
            now = self._x.clock.now()
            marker = StepRow(key, "patch", "completed", b"true", None, 1, now, now, self._count)
            await self._save(marker)
        return True

    def deprecate_patch(self, patch_id: str) -> None:
        """Mark the patch as always taken now: keep this call where ``patched`` was
        once every run that could answer False has ended, so the runs that stored the
        marker replay cleanly; remove it later."""
        self._patches.add(self._patch_key(patch_id))

    def _patch_key(self, patch_id: str) -> str:
        if not isinstance(patch_id, str) or not patch_id:
            raise ValueError(f"a patch id must be a non-empty string, got {patch_id!r}")
        check_name(patch_id, "patch id")
        return PATCH_PREFIX + patch_id
