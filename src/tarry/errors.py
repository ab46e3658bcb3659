"""Every exception tarry raises, in one place.

Each error's docstring is its default message, so ``raise RunNotFound()`` still
says something useful; most call sites pass a message naming the offending
value. The pause and bail sentinels at the bottom derive from ``BaseException``
on purpose: user code that writes ``except Exception`` around a step must never
swallow the engine's own control flow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple


class TarryError(Exception):
    """A tarry error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(TarryError, ValueError):
    """The App, a workflow or a store is configured wrongly."""


class WorkflowNotFound(TarryError, LookupError):
    """No workflow with that id is registered."""


class RunNotFound(TarryError, LookupError):
    """No run with that id exists in the store."""


class RunFinished(TarryError):
    """The run has already ended."""


class SignalNotFound(TarryError, LookupError):
    """No run waits on that signal key (strict delivery stores nothing)."""


class SignalConflict(TarryError):
    """Another run already waits on that signal key."""


class ExpressionError(TarryError, ValueError):
    """A CEL expression does not compile or cannot be evaluated."""


class NonDeterminismError(TarryError):
    """The workflow code no longer matches the steps stored for this run."""


class StoreError(TarryError):
    """The store refused or failed an operation; nothing of it was stored."""


class StoreUnavailable(StoreError):
    """The store could not be reached, or stayed busy, past its retries. Nothing was
    decided, so the same operation may be tried again later."""


class SchemaTooNew(ConfigError):
    """The store was written by a newer tarry; upgrade tarry to open it."""


class LeaseLost(TarryError):
    """This worker's lease on the run was taken over; its write was rejected."""


class StepFailed(TarryError):
    """A step ran out of attempts."""

    def __init__(self, step_id: str, cause: str, message: str | None = None) -> None:
        self.step_id = step_id
        self.cause = cause
        super().__init__(message or f"step {step_id!r} failed: {cause}")


class NonRetriableError(TarryError):
    """Raised by a step function to fail the step at once, without retries."""


class RetryAfter(TarryError):
    """Raised by a step function to be retried after ``delay`` (a duration)."""

    def __init__(self, delay: Any, message: str | None = None) -> None:
        self.delay = delay
        super().__init__(message or f"retry requested after {delay!r}")


class RunFailed(TarryError):
    """The run ended as failed."""

    def __init__(self, run_id: str, error: Any) -> None:
        self.run_id = run_id
        self.error = error
        super().__init__(f"run {run_id!r} failed: {_describe(error)}")


class RunCancelled(TarryError):
    """The run ended as cancelled."""

    def __init__(self, run_id: str, reason: Any) -> None:
        self.run_id = run_id
        self.reason = reason
        super().__init__(f"run {run_id!r} was cancelled: {_describe(reason)}")


def _describe(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


class Suspend(BaseException):
    """Unwinds a handler because its run has parked or stopped executing here.

    A BaseException so that ``except Exception`` in user code cannot catch it:
    the run's state is already in the store, and the handler must stop now.
    """


class Bail(BaseException):
    """``step.bail(reason)``: end the run as cancelled, without retry.

    A BaseException for the same reason as ``Suspend``.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class WorkerCrash(BaseException):
    """Stops an execution the way a killed worker process would: nothing more is
    written and its lease is kept until it expires, when another attempt replays
    the run. Raised by test doubles (``tarry.testing``) to test what a crash in
    the middle of a step does; a BaseException so that user code cannot catch it.
    """


class NeverIdle(TarryError, AssertionError):
    """A test environment's driving call started more executions than its
    ``max_executions`` without every run parking or ending: runs that loop,
    wake one another or retry at once without end (``tarry.testing``)."""


class RunStateError(TarryError):
    """The run is not in a state the operation applies to: a retry of a run that has
    not failed or been cancelled, a fork of a run that has not ended."""


class NestedStepError(NonRetriableError):
    """A step method was called from inside a ``step.run`` function: steps do not nest
    (the inner step would be stored as a sibling of the outer one). Fails the outer
    step at once rather than retrying it."""


class Violation(NamedTuple):
    """One way data breaks a wait's schema: where (a JSON path such as
    ``$.items[0].name``, ``$`` for the whole value) and what is wrong there."""

    path: str
    message: str


class PayloadInvalid(TarryError, ValueError):
    """The data does not fit the schema of the wait it was sent to; nothing was stored
    and the run still waits. ``errors`` lists each ``Violation(path, message)``."""

    def __init__(
        self, errors: Sequence[Violation], what: str = "the data", message: str | None = None
    ) -> None:
        self.errors = list(errors)
        shown = "; ".join(f"{e.path}: {e.message}" for e in self.errors[:3])
        more = f"; and {len(self.errors) - 3} more" if len(self.errors) > 3 else ""
        super().__init__(message or f"{what} does not fit the wait's schema: {shown}{more}")


class TokenNotFound(TarryError, LookupError):
    """No callback token has that id: check the id (or the link) it came from; the
    run it belonged to may have been purged."""


class TokenAlreadyUsed(TarryError):
    """The callback token was completed already; a token completes once and the first
    completion stands. Nothing was stored."""


class TokenGone(TarryError):
    """The callback token can no longer be completed. Nothing was stored."""


class TokenExpired(TokenGone):
    """The callback token's time ran out (its ``timeout``), and its wait with it.
    Nothing was stored; the workflow decides what a timed-out wait means."""


class TokenRunEnded(TokenGone):
    """The run the callback token belongs to has ended, or is being cancelled, so
    nothing waits for it any more. Nothing was stored."""


class TokenSignatureInvalid(TarryError):
    """The token link's signature is not valid: the link was changed or cut, or signed
    with a secret rotated out past its grace period. Use the link exactly as it was
    sent, or ask for a new one."""
