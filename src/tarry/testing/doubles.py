"""Step doubles: a step's function replaced in one test environment.

``env.mock_step("fulfill-order", "charge", return_value="charge-1")`` makes every
``step.run("charge", ...)`` of that workflow, in that environment only, call a
``StepDouble`` instead of the real function, so a test runs a workflow whose
steps charge cards or send mail without doing either. The double answers as
``unittest.mock`` does: ``side_effect`` (an exception to raise, a callable to
call with the step's arguments, or an iterable of values and exceptions, one
per call, retries included) or else ``return_value``; and it records each call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Call:
    """The arguments one call of a step double received."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class StepDouble:
    """Stands in for one step's function; see the module's docstring."""

    def __init__(
        self, workflow: str, step_id: str, *, return_value: Any = None, side_effect: Any = _UNSET
    ) -> None:
        self.workflow = workflow
        self.step_id = step_id
        self.return_value = return_value
        self._effect: Callable[..., Any] | BaseException | type[BaseException] | None = None
        self._queue: Iterator[Any] | None = None
        if side_effect is not _UNSET and side_effect is not None:
            if _is_exception(side_effect) or callable(side_effect):
                self._effect = side_effect
            elif isinstance(side_effect, Iterable) and not isinstance(side_effect, str | bytes):
                self._queue = iter(list(side_effect))
            else:
                raise TypeError(
                    f"side_effect for step {step_id!r} must be an exception, a callable or "
                    f"an iterable of values and exceptions, got {side_effect!r}"
                )
        self.calls: list[Call] = []
        """Every call, oldest first: a retried step is called once per attempt."""
        self._lock = threading.Lock()  # synchronous steps run in a pool of threads

    def __repr__(self) -> str:
        return f"StepDouble({self.workflow!r}, {self.step_id!r}, calls={len(self.calls)})"

    @property
    def call_count(self) -> int:
        return len(self.calls)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls.append(Call(args, kwargs))
            number = len(self.calls)
            if self._queue is not None:
                try:
                    answer = next(self._queue)
                except StopIteration:
                    raise AssertionError(
                        f"step {self.step_id!r} of workflow {self.workflow!r} was called "
                        f"{number} times, but its side_effect lists only {number - 1} answers"
                    ) from None
                if _is_exception(answer):
                    raise answer
                return answer
        effect = self._effect
        if effect is None:
            return self.return_value
        if _is_exception(effect):
            raise effect  # type: ignore[misc]
        # An async side_effect returns a coroutine, which the step awaits.
        return effect(*args, **kwargs)  # type: ignore[operator]


def _is_exception(value: Any) -> bool:
    return isinstance(value, BaseException) or (
        isinstance(value, type) and issubclass(value, BaseException)
    )
