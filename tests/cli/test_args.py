"""The command line's argparse layer, in-process: how annotations become arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest

from tarry.cli_args import Argument, CommandLine, Exit, Option, UsageProblem


def command_line(seen: dict[str, Any]) -> CommandLine:
    cli = CommandLine(prog="tarry", description="test", version="9.9")

    @cli.command("do-it")
    def do_it(
        what: Annotated[str, Argument(help="What.")],
        step: Annotated[str, Option("--from-step")],
        run_id: Annotated[str | None, Argument(metavar="RUN_ID")] = None,
        limit: Annotated[int, Option("--limit", "-l", min=1, max=10)] = 5,
        url: Annotated[str | None, Option("--database", envvar="TEST_URL")] = None,
        out: Annotated[Path | None, Option("--out")] = None,
        as_json: Annotated[bool, Option("--json")] = False,
    ) -> None:
        """Do it.

        At length."""
        seen.update(locals())

    return cli


def test_annotations_become_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.delenv("TEST_URL", raising=False)
    command_line(seen).main(["do-it", "x", "--from-step", "a"])
    assert {k: seen[k] for k in ("what", "step", "run_id", "limit", "url", "out", "as_json")} == {
        "what": "x", "step": "a", "run_id": None, "limit": 5, "url": None, "out": None,
        "as_json": False,
    }  # fmt: skip

    monkeypatch.setenv("TEST_URL", "sqlite:///env.db")
    args = ["do-it", "x", "r-1", "--from-step", "b", "-l", "10", "--out", "f.jsonl", "--json"]
    command_line(seen).main(args)
    assert (seen["run_id"], seen["limit"], seen["url"]) == ("r-1", 10, "sqlite:///env.db")
    assert seen["out"] == Path("f.jsonl") and seen["as_json"] is True
    command_line(seen).main([*args, "--database", "sqlite:///given.db"])
    assert seen["url"] == "sqlite:///given.db"


GIVEN = ["do-it", "x", "--from-step", "a"]


@pytest.mark.parametrize(
    ("argv", "said", "where"),
    [
        (["do-it", "x"], "required: --from-step", "tarry do-it"),
        ([*GIVEN, "--limit", "11"], "11 is not from 1 to 10", "tarry do-it"),
        ([*GIVEN, "--limit", "ten"], "'ten' is not a whole number", "tarry do-it"),
        ([*GIVEN, "--nope"], "unknown option or argument: --nope", "tarry do-it"),
        (["undo"], "invalid choice: 'undo'", "tarry"),
    ],
)
def test_what_does_not_parse_is_a_usage_problem(argv: list[str], said: str, where: str) -> None:
    with pytest.raises(UsageProblem, match=said) as raised:
        command_line({}).main(argv)
    assert raised.value.command == where


def test_no_command_prints_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Exit) as raised:
        command_line({}).main([])
    assert raised.value.code == 2
    assert "do-it" in capsys.readouterr().out
