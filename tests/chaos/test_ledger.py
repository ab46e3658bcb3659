"""The chaos checker is not vacuous: it tells an in-flight re-execution (allowed)
from one that starts after the step's result was stored (a violation)."""

from __future__ import annotations

from pathlib import Path

from chaos.driver import Config, Driver, Plan, read_ledger


def _ledger(tmp_path: Path, lines: list[str]) -> Path:
    directory = tmp_path / "ledger"
    directory.mkdir(exist_ok=True)
    (directory / "ledger-1.log").write_text("".join(f"{line}\n" for line in lines))
    return directory


def _check(tmp_path: Path, lines: list[str], ended_ns: int) -> Driver:
    driver = Driver(Config("sqlite:///unused.db", tmp_path, runs=1))
    plan = Plan(0, "k", {}, run_id="r")
    stored = {s: {"nonce": f"{s}-won"} for s in "abcd"}
    driver._verify_ledger(plan, stored, read_ledger(_ledger(tmp_path, lines)), ended_ns / 1e9)
    return driver


def _won(step: str, t: int) -> list[str]:
    return [f"S r {step} 7 tok2 {step}-won {t}", f"E r {step} 7 tok2 {step}-won {t + 5}"]


def test_a_rerun_while_in_flight_is_allowed(tmp_path: Path) -> None:
    lines = ["R r 6 tok1 100", "S r a 6 tok1 lost 110", "R r 7 tok2 2000"]
    lines += _won("a", 2010) + _won("b", 3000) + _won("c", 4000) + _won("d", 5000)
    driver = _check(tmp_path, lines, ended_ns=6000)
    assert driver.report.violations == []
    assert driver.report.reruns_in_flight == 1


def test_a_rerun_after_the_result_was_stored_is_a_violation(tmp_path: Path) -> None:
    lines = ["R r 7 tok2 2000", *_won("a", 2010), "R r 8 tok3 2100", "S r a 8 tok3 again 2110"]
    lines += _won("b", 3000) + _won("c", 4000) + _won("d", 5000)
    driver = _check(tmp_path, lines, ended_ns=6000)
    assert len(driver.report.violations) == 1
    assert "step a ran again (pid 8" in driver.report.violations[0]


def test_a_replay_after_the_run_ended_is_a_violation(tmp_path: Path) -> None:
    lines = ["R r 7 tok2 2000", *_won("a", 2010), *_won("b", 3000), *_won("c", 4000)]
    lines += [*_won("d", 5000), "R r 9 tok4 7000"]
    driver = _check(tmp_path, lines, ended_ns=6000)
    assert [v for v in driver.report.violations if "after it ended" in v]


def test_a_stored_result_no_execution_produced_is_a_violation(tmp_path: Path) -> None:
    lines = [*_won("a", 2010), *_won("b", 3000), *_won("c", 4000)]
    driver = _check(tmp_path, lines, ended_ns=6000)
    assert driver.report.violations == ["run r: step d's stored result has no finished execution"]
