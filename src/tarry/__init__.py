"""tarry: durable Python workflows built around the pause."""

from .app import App
from .context import Context
from .errors import (
    ConfigError,
    ExpressionError,
    LeaseLost,
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
    "ConfigError",
    "Context",
    "Event",
    "ExpressionError",
    "LeaseLost",
    "Message",
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
    "TarryError",
    "WaitingFor",
    "Woken",
    "WorkflowNotFound",
]

__version__ = "0.1.0"
