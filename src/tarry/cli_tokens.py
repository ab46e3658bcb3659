"""``tarry tokens rotate``: sign callback token links with a fresh secret."""

from __future__ import annotations

from typing import Annotated

from .cli_args import Argument, Option
from .cli_common import AsJson, Database, call, cli, print_json, say
from .cli_errors import usage
from .durations import parse_duration


@cli.command()
def tokens(
    action: Annotated[str, Argument(help="rotate: sign new links with a fresh secret.")],
    grace: Annotated[
        str,
        Option("--grace", help="How long links signed before stay valid [default: 7d]."),
    ] = "7d",
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Manage the secret that signs callback token links: `tarry tokens rotate`.

    New links are signed with a fresh secret; links signed before stay valid for
    --grace (a duration such as 7d, or seconds; 0: they fail at once), then fail.
    Rotate when a link or the database may have leaked.
    """
    if action != "rotate":
        usage(f"unknown tokens action {action!r}", "the only action is: tarry tokens rotate")
    try:
        seconds = parse_duration(float(grace) if grace.replace(".", "", 1).isdigit() else grace)
    except ValueError as exc:
        usage(f"--grace: {exc}", "give a duration such as 7d, 12h or 0")
    call(database, lambda app: app.rotate_token_secret(grace=seconds))
    if as_json:
        print_json({"rotated": True, "grace_seconds": seconds})
    else:
        say(f"tarry: token links are signed with a new secret; older links work for {grace}")
