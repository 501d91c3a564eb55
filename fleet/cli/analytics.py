"""`fleet analytics`: DuckDB over the fleet's history, one query or a SQL prompt."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fleet.cli import common
from fleet.cli.common import JsonFlag, Unreachable, console, error_console, print_json, reporting
from fleet.settings import get_settings

if TYPE_CHECKING:
    # DuckDB (and pipeline.analytics with it) loads when a query is about to run, so
    # `fleet analytics --help` and a typo in the options answer at once.
    import duckdb

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
    import duckdb

    with reporting(as_json=as_json):
        con = _open(common.database_url(), archive_dir)
    try:
        if query is not None:
            try:
                _show(con.execute(query), as_csv=as_csv, as_json=as_json)
            except duckdb.Error as exc:
                if isinstance(exc, duckdb.CatalogException | duckdb.BinderException):
                    # A table or column the schema lacks may be a missed migration.
                    with reporting(as_json=as_json):
                        _check_schema()
                error_console().print(f"query failed: {exc}")
                raise typer.Exit(common.EXIT_INPUT) from None
            return
        _prompt(con)
    finally:
        con.close()


def _open(url: str, archive_dir: Path | None) -> duckdb.DuckDBPyConnection:
    """Open DuckDB over the fleet; a database it cannot read is explained, not a traceback."""
    import duckdb

    from pipeline.analytics import connect

    try:
        return connect(
            postgres_url=url,
            extension_directory=get_settings().data_dir / "duckdb-extensions",
            archive_dir=archive_dir,
        )
    except duckdb.Error as exc:
        # The views name the fleet's tables: on an unmigrated database they fail first.
        _check_schema()
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise Unreachable(
            f"DuckDB could not open the fleet database at {common.shown_url(url)}: {first}"
        ) from None


def _check_schema() -> None:
    """Raise Unreachable when the database is not migrated to this code's schema.

    Only called once something failed: Alembic costs a tenth of a second to import, and a
    working database need not pay it on every start.
    """
    from db import migrate

    eng = common.engine()
    with eng.connect() as conn:
        at = migrate.current(conn)
    heads = migrate.heads()
    where = common.shown_url(eng.url)
    if at is None:
        raise Unreachable(
            f"the database at {where} is not migrated yet", hint="run `fleet db upgrade`"
        )
    if at not in heads:
        raise Unreachable(
            f"the database at {where} has schema {at}, this code needs {heads[0]}",
            hint="run `fleet db upgrade`; `fleet db current` shows the revision",
        )


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
    import duckdb

    duckdb_error = duckdb.Error
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
        except duckdb_error as exc:
            # A typo at the prompt is not the end of the session.
            error_console().print(f"error: {exc}")
