"""`fleet pipeline`: serve the Prefect flows on their schedules, or run one of them now."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from sqlalchemy.exc import SQLAlchemyError

from db import migrate
from db.errors import FleetError
from fleet.cli import common
from fleet.cli.common import (
    JsonFlag,
    Unreachable,
    console,
    error_console,
    plain,
    print_json,
    reporting,
)
from fleet.settings import Settings, get_settings

app = typer.Typer(
    help="The data pipeline (Prefect flows): feed ingestion, the availability table, overdue"
    " and conflict alerts, notifications, the history archive.",
    no_args_is_help=True,
)


def _use_database() -> None:
    """Resolve the database once, check its schema, and hand it to the flow runs."""
    url = common.database_url()
    with common.engine().connect() as conn:
        at, heads = migrate.current(conn), migrate.heads()
    if at not in heads:
        raise Unreachable(
            f"the database schema is at {at or 'nothing'}, this code needs {heads[0]}",
            hint="run `fleet db upgrade` first",
        )
    # Flow runs are child processes that read settings from the environment: they use the
    # database resolved here instead of each starting the embedded server again.
    os.environ["FLEET_DATABASE_URL"] = url


def _unavailable(exc: FleetError) -> Unreachable:
    return Unreachable(exc.message, hint=exc.hint or "")


@app.command()
def serve(
    port: Annotated[
        int | None,
        typer.Option(
            help="Port of the local Prefect server (default FLEET_PREFECT_PORT, 4200).",
            min=1,
            max=65535,
        ),
    ] = None,
) -> None:
    """Serve every flow on its schedule, with a local Prefect server; Ctrl-C stops both.

    With PREFECT_API_URL set, the flows are served against that server and none is started.
    """
    from pipeline import runtime

    settings: Settings = get_settings()
    if port is not None:
        settings = settings.model_copy(update={"prefect_port": port})
    with reporting():
        _use_database()
        try:
            runtime.serve(settings, echo=lambda line: console().print(line, soft_wrap=True))
        except runtime.PrefectUnavailable as exc:
            raise _unavailable(exc) from None


@app.command()
def run(
    flow: Annotated[
        str,
        typer.Argument(
            help="ingest-feeds, materialize-availability, refresh-overdue,"
            " deliver-notifications or archive-history."
        ),
    ],
    retries: Annotated[
        int, typer.Option(help="Times to try again after a failure.", min=0, max=10)
    ] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Run one flow once, now, in this process (on demand, outside its schedule)."""
    from pipeline import runtime

    settings = get_settings()
    with reporting(as_json=as_json):
        runtime.configure_environment(settings)
        from pipeline.flows import get_flow

        get_flow(flow)  # an unknown name fails before anything starts
        _use_database()
        try:
            result = runtime.run_flow(flow, settings, retries=retries)
        except (FleetError, SQLAlchemyError):
            raise
        except Exception as exc:
            error_console().print(f"error: {flow} failed: {exc}", soft_wrap=True)
            error_console().print(
                "hint: the run and its log are in the Prefect UI; fix the cause and run it again",
                soft_wrap=True,
            )
            raise typer.Exit(common.EXIT_FAILED) from None
    if as_json:
        print_json({"flow": flow, "result": plain(result)})
        return
    console().print(f"{flow}: {_describe(plain(result))}", soft_wrap=True)


def _describe(result: Any) -> str:
    if isinstance(result, dict):
        return ", ".join(f"{k} {_describe(v)}" for k, v in result.items())
    if isinstance(result, list):
        return f"[{', '.join(_describe(v) for v in result)}]"
    return str(result)


@app.command()
def flows(as_json: JsonFlag = False) -> None:
    """List the flows with their schedules."""
    from pipeline import runtime

    runtime.configure_environment(get_settings())
    from pipeline.flows import FLOWS, schedule_text

    rows = [
        {
            "flow": name,
            "schedule": schedule_text(name),
            "description": FLOWS[name].description or "",
        }
        for name in FLOWS
    ]
    if as_json:
        print_json(rows)
        return
    out = common.table(None, ["flow", "schedule", "description"], wrap=["description"])
    for r in rows:
        out.add_row(r["flow"], r["schedule"], r["description"])
    console().print(out)
