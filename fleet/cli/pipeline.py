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
        int,
        typer.Option(help="Times to try again after a failure (when run here).", min=0, max=10),
    ] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Run one flow once, now, outside its schedule, and wait for it.

    When `fleet pipeline serve` (or the Prefect server at PREFECT_API_URL) is up, the run is
    handed to it and its log lines follow here; else the flow runs in this process.
    """
    from pipeline import runtime

    settings = get_settings()
    with reporting(as_json=as_json):
        runtime.configure_environment(settings)
        from pipeline.flows import get_flow

        get_flow(flow)  # an unknown name fails before anything starts
        api_url = runtime.pipeline_api(settings)
        triggered = None
        if api_url is not None:
            triggered = _trigger(flow, api_url, as_json=as_json)
        if triggered is not None:
            _report_triggered(triggered, as_json=as_json)
            return
        _use_database()
        result = _run_here(flow, retries=retries, as_json=as_json)
    if as_json:
        print_json({"flow": flow, "ran": "here", "result": plain(result)})
        return
    console().print(f"{flow}: {_describe(plain(result))}", soft_wrap=True)


def _trigger(flow: str, api_url: str, *, as_json: bool) -> Any:
    from pipeline import runtime

    # Log lines go to stderr with --json, so stdout stays one JSON document.
    out = error_console() if as_json else console()

    def echo(line: str) -> None:
        out.print(line, soft_wrap=True)

    try:
        return runtime.trigger_flow(flow, api_url, echo=echo)
    except KeyboardInterrupt:
        error_console().print(
            f"{flow}: stopped following; the run goes on in the Prefect server", soft_wrap=True
        )
        raise typer.Exit(common.EXIT_FAILED) from None
    except Exception as exc:  # the server went away mid-run: say so, no traceback
        raise Unreachable(
            f"the Prefect server at {api_url} stopped answering: {exc}",
            hint="check `fleet pipeline serve`; the run and its log are in the Prefect UI",
        ) from None


def _report_triggered(triggered: Any, *, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "flow": triggered.flow,
                "ran": "prefect",
                "flow_run_id": str(triggered.flow_run_id),
                "flow_run": triggered.name,
                "state": triggered.state,
                "message": triggered.message,
                "url": triggered.url,
            }
        )
    if triggered.ok:
        if not as_json:
            console().print(f"{triggered.flow}: {triggered.message}", soft_wrap=True)
        return
    error_console().print(
        f"error: {triggered.flow} ended {triggered.state.lower()}: {triggered.message}",
        soft_wrap=True,
    )
    error_console().print(
        f"hint: its log is above and at {triggered.url}; fix the cause and run it again",
        soft_wrap=True,
    )
    raise typer.Exit(common.EXIT_FAILED)


def _run_here(flow: str, *, retries: int, as_json: bool) -> Any:
    from pipeline import runtime

    bar, progress = common.progress_bar(as_json)
    # A bar that turns while the flow works; the ingest adds a bar per stage with counts.
    working = bar.add_task(flow, total=None)
    try:
        with bar:
            result = runtime.run_directly(
                flow,
                retries=retries,
                log=lambda line: bar.console.print(line, soft_wrap=True),
                progress=progress,
            )
            bar.update(working, total=1, completed=1)
    except (FleetError, SQLAlchemyError):
        raise
    except Exception as exc:
        error_console().print(f"error: {flow} failed: {exc}", soft_wrap=True)
        error_console().print(
            "hint: the lines above say how far it got; fix the cause and run it again",
            soft_wrap=True,
        )
        raise typer.Exit(common.EXIT_FAILED) from None
    return result


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
