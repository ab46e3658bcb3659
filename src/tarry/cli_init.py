"""``tarry init [TARGET]``: create the store a command names, on purpose.

Only this command and ``worker``, ``serve`` and ``dev`` create a store; every other
command refuses one that does not exist (``cli_store``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from .app import App
from .cli_args import Argument
from .cli_common import AsJson, Database, cli, load_app, print_json, say
from .cli_errors import fail
from .cli_store import database_url
from .errors import TarryError
from .urls import mask_url


@cli.command()
def init(
    target: Annotated[
        str | None,
        Argument(help="Also record the workflows of this App (module:app or path.py)."),
    ] = None,
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Create the store (the SQLite file, or tarry's schema in PostgreSQL) if missing.

    With TARGET, also record its workflows, so `tarry start` knows them before a worker
    has run. Opening an existing store only brings its schema up to date.
    """
    try:
        app = load_app(target, database) if target else App(database_url(database))

        async def go() -> None:
            async with app:
                pass

        asyncio.run(go())
    except (TarryError, OSError) as exc:
        fail(exc)
    shown = mask_url(app.database)
    if as_json:
        print_json({"database": shown, "workflows": sorted(app.workflows)})
        return
    recorded = f"; workflows {', '.join(sorted(app.workflows))}" if app.workflows else ""
    say(f"tarry: store ready at {shown}{recorded}")
