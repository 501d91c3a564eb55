"""`fleet serve` and `fleet openapi`: run the web server, print the API description."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from db import migrate
from fleet.cli import common
from fleet.cli.common import Unreachable, console, reporting
from fleet.settings import get_settings


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option(help="Server processes sharing the port.", min=1, max=64)
    ] = 1,
) -> None:
    """Serve the dashboard pages, the REST API and the live streams in one server."""
    from api.security import secret_key
    from api.workers import server_options

    settings = get_settings()
    with reporting():
        url = common.database_url()
        with common.engine().connect() as conn:
            at, heads = migrate.current(conn), migrate.heads()
        if at not in heads:
            raise Unreachable(
                f"the database schema is at {at or 'nothing'}, this code needs {heads[0]}",
                hint="run `fleet db upgrade` first",
            )
        # Made once here, so worker processes all read the same key instead of racing.
        secret_key(settings)
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
    out = console()
    out.print(f"fleet: serving on http://{shown}:{port}/  (API docs: /api/docs)")
    if workers == 1:
        import uvicorn

        from api.app import create_app

        uvicorn.run(
            create_app(settings.model_copy(update={"database_url": url})),
            **server_options(host, port),
        )
        return
    # Spawned workers re-import the main module before they answer uvicorn's health ping;
    # this one pulls in the whole CLI (pandas, polars, Prefect: 1.5 s of CPU each). Become
    # the light supervisor instead: same PID, so signals and process groups stay as they were.
    sys.stdout.flush()
    sys.stderr.flush()
    command = [sys.executable, "-m", "api.workers", "--host", host, "--port", str(port)]
    os.execv(sys.executable, [*command, "--workers", str(workers)])


def openapi(
    indent: Annotated[int, typer.Option(help="Indentation of the JSON.")] = 2,
) -> None:
    """Print the OpenAPI document the server serves at /api/openapi.json (for client generators)."""
    from api.app import create_app

    document = create_app(get_settings(), pages=False).openapi()
    print(json.dumps(document, indent=indent or None))
