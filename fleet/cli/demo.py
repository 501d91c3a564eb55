"""`fleet demo-data` and `fleet demo-logins`: a deterministic demo fleet and its sign-ins."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from db import demo
from db.status import list_status
from fleet.cli.common import JsonFlag, console, print_json, progress_bar, transaction
from fleet.settings import get_settings


def demo_data(
    vehicles: Annotated[int, typer.Option(help="How many vehicles.")] = 200,
    locations: Annotated[int, typer.Option(help="How many rental locations.")] = 4,
    seed: Annotated[int, typer.Option(help="The same seed gives the same fleet.")] = 7,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing when there are vehicles already.")
    ] = False,
    feeds: Annotated[
        bool,
        typer.Option(
            "--feeds", help="Also write realistic feed files for the new fleet into the inbox."
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Load demo locations, staff, customers, vehicles and their bookings in one transaction."""
    bar, progress = progress_bar(as_json)

    with transaction(as_json=as_json) as conn:
        if if_empty and list_status(conn, limit=1):
            skipped = True
        else:
            skipped = False
            with bar:
                summary = demo.load_demo(
                    conn, vehicles=vehicles, locations=locations, seed=seed, progress=progress
                )
            written = []
            if feeds:
                from pipeline.feeds.demo import write_demo_feeds

                inbox = Path(get_settings().inbox_location)
                written = write_demo_feeds(conn, inbox, seed=seed)
    if skipped:
        if as_json:
            print_json({"loaded": False, "reason": "vehicles exist already"})
        else:
            console().print("the database has vehicles already; demo data not loaded")
        return
    if as_json:
        print_json({"loaded": True, **summary.model_dump(), "feeds": [str(p) for p in written]})
        return
    table = Table(title=f"demo data loaded (seed {seed})", show_header=False)
    for name, value in summary.model_dump().items():
        table.add_row(name.replace("_", " "), str(value))
    console().print(table)
    for path in written:
        console().print(f"demo feed file: {path}")


def demo_logins(as_json: JsonFlag = False) -> None:
    """Show the sign-ins `fleet demo-data` creates, one per role, to try the server with."""
    logins = [
        {"username": username, "role": role, "password": password}
        for username, role, password in demo.DEMO_LOGINS
    ]
    if as_json:
        print_json(logins)
        return
    table = Table(title="demo sign-ins, made by `fleet demo-data`")
    for column in ("username", "role", "password"):
        table.add_column(column, no_wrap=True)
    for login in logins:
        table.add_row(login["username"], login["role"], login["password"])
    console().print(table)
