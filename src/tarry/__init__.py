"""tarry: durable Python workflows built around the pause."""

from . import testing
from .app import App
from .clock import Clock, ManualClock, SystemClock
from .conditions import CancelOn, Trigger, cancel_on, event, message, signal, trigger
from .context import Context
from .errors import (
    ConfigError,
    ExpressionError,
    LeaseLost,
    NestedStepError,
    NonDeterminismError,
    NonRetriableError,
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
    WorkflowNotFound,
)
from .models import (
    Event,
    Message,
    Page,
    Run,
    SendResult,
    SignalResult,
    StepRecord,
    WaitingFor,
    Woken,
)
from .step import Step

__all__ = [
    "App",
    "CancelOn",
    "Clock",
    "ConfigError",
    "Context",
    "Event",
    "ExpressionError",
    "LeaseLost",
    "ManualClock",
    "Message",
    "NestedStepError",
    "NonDeterminismError",
    "NonRetriableError",
    "Page",
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
    "Trigger",
    "WaitingFor",
    "Woken",
    "WorkflowNotFound",
    "cancel_on",
    "event",
    "message",
    "signal",
    "testing",
    "trigger",
]

__version__ = "0.1.0"
