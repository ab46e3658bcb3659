"""The ``tarry`` command line, parsed with the standard library's argparse.

A command is a plain function registered with ``@cli.command()``; each parameter
is annotated ``Annotated[T, Argument(...)]`` (positional) or ``Annotated[T,
Option("--flag", ...)]``, where T is ``str``, ``int``, ``Path`` or ``bool`` (a flag),
optionally ``| None``. The parameter's default is the option's; one without a
default is required. A parse error raises ``UsageProblem`` and ``cli_errors``
reports it like every other error (exit 2).

The library install carries the CLI (a worker needs it), and argparse keeps it to
the standard library: a CLI framework brought ten packages, pydantic among them.
"""

from __future__ import annotations

import argparse
import inspect
import os
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn, Union, get_args, get_origin, get_type_hints

Command = Callable[..., None]


class UsageProblem(Exception):
    """The command line does not parse: ``command`` is the ``tarry ...`` it reached."""

    def __init__(self, message: str, command: str) -> None:
        super().__init__(message)
        self.command = command


class Exit(Exception):
    """Leave the command with this exit code (after it printed what it had to)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, slots=True)
class Argument:
    help: str = ""
    metavar: str | None = None


@dataclass(frozen=True, slots=True, init=False)
class Option:
    flags: tuple[str, ...]
    help: str
    envvar: str | None
    min: int | None
    max: int | None

    def __init__(
        self,
        *flags: str,
        help: str = "",
        envvar: str | None = None,
        min: int | None = None,
        max: int | None = None,
    ) -> None:
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "help", help)
        object.__setattr__(self, "envvar", envvar)
        object.__setattr__(self, "min", min)
        object.__setattr__(self, "max", max)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageProblem(message, self.prog)


@dataclass
class CommandLine:
    prog: str
    description: str
    version: str
    commands: list[tuple[str, Command, str]] = field(default_factory=list)

    def command(self, name: str | None = None, *, group: str = "") -> Callable[[Command], Command]:
        """Register a command, named after the function (``_`` as ``-``) unless named."""

        def register(fn: Command) -> Command:
            self.commands.append((name or fn.__name__.replace("_", "-"), fn, group))
            return fn

        return register

    def parser(self) -> argparse.ArgumentParser:
        root = _Parser(
            prog=self.prog,
            description=self.description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        root.add_argument(
            "--version", action="version", version=f"{self.prog} {self.version}",
            help="print tarry's version",
        )  # fmt: skip
        commands = root.add_subparsers(metavar="COMMAND", parser_class=_Parser)
        # The commands of a group (operating runs) after the others, each in the order
        # registered.
        for name, fn, group in sorted(self.commands, key=lambda c: c[2] != ""):
            doc = inspect.cleandoc(fn.__doc__ or "")
            summary = " ".join(doc.split("\n\n", 1)[0].split()) + (f" [{group}]" if group else "")
            sub = commands.add_parser(
                name,
                help=summary,
                description=doc,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            _add_parameters(sub, fn)
            sub.set_defaults(_command=fn)
        return root

    def main(self, argv: Sequence[str]) -> None:
        """Parse ``argv`` and run its command; with no command, print the help (exit 2)."""
        parser = self.parser()
        if not argv:
            parser.print_help()
            raise Exit(2)
        namespace, unknown = parser.parse_known_args(argv)
        parsed = vars(namespace)
        command = parsed.pop("_command", None)
        if command is None:
            raise UsageProblem("the command is missing", self.prog)
        if unknown:
            name = next(n for n, fn, _ in self.commands if fn is command)
            raise UsageProblem(
                f"unknown option or argument: {' '.join(unknown)}", f"{self.prog} {name}"
            )
        command(**parsed)


def _add_parameters(parser: argparse.ArgumentParser, fn: Command) -> None:
    hints = get_type_hints(fn, include_extras=True)
    for name, parameter in inspect.signature(fn).parameters.items():
        hint = hints[name]
        if get_origin(hint) is not Annotated:
            raise TypeError(f"{fn.__name__}({name}): annotate it with Argument or Option")
        base, *metadata = get_args(hint)
        spec = next(m for m in metadata if isinstance(m, Argument | Option))
        kind = _plain(base)
        required = parameter.default is inspect.Parameter.empty
        default = None if required else parameter.default
        if isinstance(spec, Argument):
            optional: dict[str, Any] = {} if required else {"nargs": "?", "default": default}
            parser.add_argument(
                name,
                metavar=spec.metavar or name.upper(),
                help=spec.help,
                type=_converter(kind, None, None),
                **optional,
            )
            continue
        if spec.envvar and os.environ.get(spec.envvar):
            default, required = os.environ[spec.envvar], False
        if kind is bool:
            parser.add_argument(*spec.flags, dest=name, action="store_true", help=spec.help)
            continue
        parser.add_argument(
            *spec.flags,
            dest=name,
            required=required,
            default=default,
            type=_converter(kind, spec.min, spec.max),
            help=spec.help + (f" (env {spec.envvar})" if spec.envvar else ""),
        )


def _plain(base: Any) -> type:
    """``str``, ``int``, ``bool`` or ``Path`` out of ``T`` or ``T | None``."""
    if get_origin(base) in (Union, types.UnionType):
        (base,) = (a for a in get_args(base) if a is not type(None))
    if base not in (str, int, bool, Path):
        raise TypeError(f"unsupported parameter type {base!r}")
    kind: type = base
    return kind


def _converter(kind: type, low: int | None, high: int | None) -> Callable[[str], Any]:
    if kind is not int:
        return kind

    def to_int(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{value} is not {bounds}")
        return value

    return to_int
