"""tarry: durable Python workflows built around the pause."""

from typing import TYPE_CHECKING

from . import testing, verify
from .app import App
from .clock import Clock, ManualClock, SystemClock
from .conditions import CancelOn, Trigger, cancel_on, event, message, signal, token, trigger
from .context import Context
from .errors import (
    ConfigError,
    ExpressionError,
    LeaseLost,
    NestedStepError,
    NonDeterminismError,
    NonRetriableError,
    PayloadInvalid,
    RetryAfter,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunNotFound,
    SchemaTooNew,
    SignalConflict,
    SignalNotFound,
    StepFailed,
    StoreError,
    StoreUnavailable,
    TarryError,
    TokenAlreadyUsed,
    TokenExpired,
    TokenGone,
    TokenNotFound,
    TokenRunEnded,
    TokenSignatureInvalid,
    Violation,
    WorkflowNotFound,
)
from .flow import Debounce, Limit, Rate, debounce, limit, rate
from .models import (
    Event,
    Message,
    Page,
    Run,
    SendResult,
    SignalResult,
    StepRecord,
    Token,
    TokenInfo,
    WaitingFor,
    Woken,
)
from .schedules import Cron, cron
from .step import Step

if TYPE_CHECKING:  # at run time, imported on first use by __getattr__ below
    from .approval import Approval

__all__ = [
    "App",
    "Approval",
    "CancelOn",
    "Clock",
    "ConfigError",
    "Context",
    "Cron",
    "Debounce",
    "Event",
    "ExpressionError",
    "LeaseLost",
    "Limit",
    "ManualClock",
    "Message",
    "NestedStepError",
    "NonDeterminismError",
    "NonRetriableError",
    "Page",
    "PayloadInvalid",
    "Rate",
    "RetryAfter",
    "Run",
    "RunCancelled",
    "RunFailed",
    "RunFinished",
    "RunNotFound",
    "SchemaTooNew",
    "SendResult",
    "SignalConflict",
    "SignalNotFound",
    "SignalResult",
    "Step",
    "StepFailed",
    "StepRecord",
    "StoreError",
    "StoreUnavailable",
    "SystemClock",
    "TarryError",
    "Token",
    "TokenAlreadyUsed",
    "TokenExpired",
    "TokenGone",
    "TokenInfo",
    "TokenNotFound",
    "TokenRunEnded",
    "TokenSignatureInvalid",
    "Trigger",
    "Violation",
    "WaitingFor",
    "Woken",
    "WorkflowNotFound",
    "cancel_on",
    "cron",
    "debounce",
    "event",
    "limit",
    "message",
    "rate",
    "signal",
    "testing",
    "token",
    "trigger",
    "verify",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # tarry.Approval is a pydantic model, and pydantic comes with the server extra:
    # import it only when it is used, so that the library alone still imports.
    if name == "Approval":
        from .approval import Approval

        return Approval
    raise AttributeError(f"module 'tarry' has no attribute {name!r}")
