"""``tarry check``: would the runs waiting now survive this code?

Every run that has not ended is replayed against the code in a dry mode: a step
with a stored result answers from it, and the first step without one stops the
replay there, which is where the run would continue. No step function runs,
nothing is written and no lease is taken; the store is only read.

Per run the check reports ``ok`` (where it would continue), ``error`` (a stored
step meets a step of another kind, the wait it is parked on is not the wait the
code reaches at that key, or the handler raises while replaying), ``warning``
(the code reaches a new step while stored steps recorded later stay unvisited,
or stored steps are never reached) or ``unknown`` (its workflow is not in the
code). The runtime refuses the same errors: such a run fails with
``NonDeterminismError`` instead of resuming into different behaviour.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from . import serde
from .attempt import Attempt
from .clock import Clock
from .errors import Bail, NonDeterminismError, StepFailed, Suspend
from .execution import SyncStep
from .local import Local
from .models import ENDED_STATUSES, EndStatus
from .registry import Registry, Workflow
from .settings import Settings
from .step import Step
from .store.base import ClaimedRun, Lease, RunFilter, RunRow, StepRow, Store

Verdict = Literal["ok", "warning", "error", "unknown"]
_BATCH = 500


@dataclass(frozen=True, slots=True)
class RunCheck:
    """What replaying one run against the code found."""

    run_id: str
    workflow: str
    version: str | None
    """The code version the run last ran under."""
    verdict: Verdict
    continues_at: str | None
    """The step where the run would continue (None: it would end, or cannot run)."""
    problems: list[str] = field(default_factory=list)
    traceback: str | None = None
    """For a handler that raised while replaying."""


@dataclass(frozen=True, slots=True)
class CheckReport:
    runs: list[RunCheck]
    code_versions: dict[str, str]
    """The version of each workflow in the code checked."""

    @property
    def errors(self) -> list[RunCheck]:
        return [r for r in self.runs if r.verdict in ("error", "unknown")]

    @property
    def warnings(self) -> list[RunCheck]:
        return [r for r in self.runs if r.verdict == "warning"]

    def passed(self, *, strict: bool = False) -> bool:
        """No errors (and, ``strict``, no warnings either)."""
        return not self.errors and not (strict and self.warnings)

    def summary(self) -> dict[tuple[str, str | None], Counter[str]]:
        """Verdict counts per (workflow, version the runs last ran under)."""
        counts: dict[tuple[str, str | None], Counter[str]] = {}
        for run in self.runs:
            counts.setdefault((run.workflow, run.version), Counter())[run.verdict] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed(),
            "code_versions": self.code_versions,
            "summary": [
                {"workflow": w, "version": v, **dict(c)} for (w, v), c in self.summary().items()
            ],
            "runs": [
                {"run_id": r.run_id, "workflow": r.workflow, "version": r.version,
                 "verdict": r.verdict, "continues_at": r.continues_at,
                 "problems": r.problems, "traceback": r.traceback}
                for r in self.runs
            ],
        }  # fmt: skip


class _Stop(BaseException):
    """The replay reached a step with no stored result: the run would continue here."""


class _ReadOnly:
    """Stands in for the store during a dry replay: any call is a bug, loudly."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a dry replay tried to use the store ({name})")


class _DryAttempt(Attempt):
    """An attempt that stops at the first step needing work and writes nothing."""

    step: Step | None = None
    failure: str | None = None

    async def boundary(self) -> None:
        raise _Stop()

    async def end(
        self,
        status: EndStatus,
        output: bytes | None = None,
        error: bytes | None = None,
        *,
        cause: BaseException | None = None,
    ) -> None:
        if status == "failed" and error is not None:
            self.failure = str((serde.loads(error) or {}).get("message", "failed"))
        self.over = True

    async def honor_cancel(self) -> None:
        self.over = True


async def check_runs(
    store: Store,
    registry: Registry,
    settings: Settings,
    clock: Clock,
    *,
    workflow: str | None = None,
) -> CheckReport:
    """Replay every run that has not ended (of ``workflow``, or all) against the code
    in ``registry``; see the module's docstring."""
    threads = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="tarry-check")
    results: list[RunCheck] = []
    try:
        after = 0
        where = RunFilter(workflow=workflow, live=True)
        while True:
            page = await store.find_runs(where, after, _BATCH)
            if not page:
                break
            after = page[-1][0]
            for run, steps in await store.get_runs([run_id for _, run_id in page]):
                if run.status in ENDED_STATUSES:
                    continue  # ended since it was listed
                results.append(await _check(run, steps, registry, settings, clock, threads))
            if len(page) < _BATCH:
                break
    finally:
        threads.shutdown(wait=False)
    versions = {name: registry.version_of(name) or "" for name in registry}
    return CheckReport(results, versions)


async def _check(
    run: RunRow,
    steps: Sequence[StepRow],
    registry: Registry,
    settings: Settings,
    clock: Clock,
    threads: concurrent.futures.Executor,
) -> RunCheck:
    version = run.last_version or run.version
    found = registry.get(run.workflow)
    if found is None:
        unknown = f"unknown workflow {run.workflow!r}: the code does not define it"
        return RunCheck(run.id, run.workflow, version, "unknown", None, [unknown])
    attempt = _DryAttempt(
        ClaimedRun(run, list(steps), Lease(run.id, "")),
        retries=found.retries,
        settings=settings,
        store=_ReadOnly(),
        clock=clock,
        local=Local(),
        threads=threads,
        version_of=registry.version_of,
    )
    attempt.dry = True
    step = Step(attempt)
    stopped, error, trace = await _replay(attempt, step, found, threads)
    problems: list[str] = []
    if error is not None:
        problems.append(error)
        return RunCheck(run.id, run.workflow, version, "error", None, problems, trace)
    at = list(step._pos)[-1] if stopped and step._pos else None
    unvisited = [key for key in step.unvisited() if key != at]
    if unvisited:
        stored_at = at is not None and at in attempt.memo
        if at is not None and not stored_at:
            problems.append(
                f"the code reaches a new step {at!r} while stored steps {unvisited} stay "
                "unvisited (a step inserted or moved before them)"
            )
        else:
            problems.append(f"stored steps {unvisited} are never reached by the code")
    return RunCheck(run.id, run.workflow, version, "warning" if problems else "ok", at, problems)


async def _replay(
    attempt: _DryAttempt, step: Step, workflow: Workflow, threads: concurrent.futures.Executor
) -> tuple[bool, str | None, str | None]:
    """Replay the handler: (stopped at a step, error message, traceback)."""
    try:
        if workflow.is_async:
            await workflow.fn(attempt.ctx, step)
        else:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(threads, workflow.fn, attempt.ctx, SyncStep(step, loop))
    except _Stop:
        return True, None, None
    except (Suspend, Bail):
        return False, attempt.failure, None
    except NonDeterminismError as exc:
        return False, str(exc), None
    except StepFailed as exc:
        message = f"the run would fail: {exc}"
        return False, message, "".join(traceback.format_exception(exc))
    except Exception as exc:
        message = f"the handler raised while replaying: {type(exc).__name__}: {exc}"
        return False, message, "".join(traceback.format_exception(exc))
    return False, attempt.failure, None
