"""`fleet analytics`: DuckDB over the fleet's history, one query or a SQL prompt."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated, Any

import duckdb
import typer

from fleet.cli import common
from fleet.cli.common import JsonFlag, console, error_console, print_json, reporting
from fleet.settings import get_settings
from pipeline.analytics import connect

PROMPT_HELP = "SQL ending in ';' runs it; .tables lists views; .quit (or Ctrl-D) leaves."


def analytics(
    query: Annotated[
        str | None, typer.Option("--query", "-q", help="Run one statement and exit.")
    ] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    as_json: JsonFlag = False,
    archive_dir: Annotated[
        Path | None,
        typer.Option(
            "--archive-dir",
            help="Parquet history archive to include (default: FLEET_ARCHIVE_DIR or"
            " FLEET_DATA_DIR/archive).",
        ),
    ] = None,
) -> None:
    """Query the fleet's history with DuckDB (views in schema `fleet`, tables under `pg`).

    Status history and events span the Parquet archive and the live database; see
    docs/analytics.md for the views and example queries.
    """
    if as_csv and as_json:
        error_console().print("choose one of --csv and --json")
        raise typer.Exit(common.EXIT_INPUT)
    if archive_dir is not None and not archive_dir.is_dir():
        # An explicit archive that is not there is a typo, not an empty archive.
        error_console().print(
            f"--archive-dir {archive_dir} is not a folder; give the archive folder the"
            " pipeline writes (FLEET_ARCHIVE_DIR), or leave the option out"
        )
        raise typer.Exit(common.EXIT_INPUT)
    with reporting(as_json=as_json):
        url = common.database_url()
    con = connect(
        postgres_url=url,
        extension_directory=get_settings().data_dir / "duckdb-extensions",
        archive_dir=archive_dir,
    )
    try:
        if query is not None:
            try:
                _show(con.execute(query), as_csv=as_csv, as_json=as_json)
            except duckdb.Error as exc:
                error_console().print(f"query failed: {exc}")
                raise typer.Exit(common.EXIT_INPUT) from None
            return
        _prompt(con)
    finally:
        con.close()


def _show(result: duckdb.DuckDBPyConnection, *, as_csv: bool, as_json: bool) -> None:
    if result.description is None:
        return
    columns = [d[0] for d in result.description]
    rows = result.fetchall()
    if as_json:
        print_json([dict(zip(columns, r, strict=True)) for r in rows])
    elif as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        table = common.table(common.counted(len(rows), "row"), columns)
        for r in rows:
            table.add_row(*(_cell(v) for v in r))
        console().print(table)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _prompt(con: duckdb.DuckDBPyConnection) -> None:
    out = console()
    out.print(PROMPT_HELP)
    pending: list[str] = []
    while True:
        try:
            line = input("fleet> " if not pending else "  ...> ")
        except EOFError:
            return
        stripped = line.strip()
        if not pending and stripped in (".quit", ".exit"):
            return
        if not pending and stripped == ".tables":
            _show(
                con.execute(
                    "SELECT table_schema, table_name FROM information_schema.tables"
                    " WHERE table_schema = 'fleet' ORDER BY table_name"
                ),
                as_csv=False,
                as_json=False,
            )
            continue
        pending.append(line)
        if not stripped.endswith(";"):
            continue
        statement, pending = "\n".join(pending), []
        try:
            _show(con.execute(statement), as_csv=False, as_json=False)
        except duckdb.Error as exc:
            # A typo at the prompt is not the end of the session.
            error_console().print(f"error: {exc}")
