"""`fleet db`: migrate the schema and say which database the commands use."""

from __future__ import annotations

from typing import Annotated

import typer

from db import migrate
from fleet.cli.common import (
    JsonFlag,
    console,
    database_url,
    print_json,
    reporting,
    shown_url,
    transaction,
)

app = typer.Typer(help="Migrate the schema and show which database is used.", no_args_is_help=True)


@app.command()
def upgrade(
    revision: Annotated[str, typer.Option(help="Revision to migrate up to.")] = "head",
    as_json: JsonFlag = False,
) -> None:
    """Migrate the database up to a revision (the newest by default)."""
    with transaction(as_json=as_json) as conn:
        before = migrate.current(conn)
        migrate.upgrade(conn, revision)
        after = migrate.current(conn)
    _report_move(before, after, as_json)


@app.command()
def downgrade(
    revision: Annotated[str, typer.Option(help="Revision to migrate down to.")] = "-1",
    as_json: JsonFlag = False,
) -> None:
    """Migrate the database down to a revision (one step by default)."""
    with transaction(as_json=as_json) as conn:
        before = migrate.current(conn)
        migrate.downgrade(conn, revision)
        after = migrate.current(conn)
    _report_move(before, after, as_json)


@app.command()
def current(as_json: JsonFlag = False) -> None:
    """Show the revision the database is at and whether it is the newest."""
    with transaction(as_json=as_json) as conn:
        revision = migrate.current(conn)
    heads = migrate.heads()
    if as_json:
        print_json({"current": revision, "heads": heads, "up_to_date": revision in heads})
        return
    state = "up to date" if revision in heads else f"behind (head is {', '.join(heads)})"
    console().print(f"{revision or 'not migrated'}: {state}")


@app.command()
def url(
    show_password: Annotated[bool, typer.Option(help="Print the password too.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Print the database URL the commands use."""
    with reporting(as_json=as_json):
        resolved = database_url()
    shown = resolved if show_password else shown_url(resolved)
    if as_json:
        print_json({"url": shown})
    else:
        print(shown)


def _report_move(before: str | None, after: str | None, as_json: bool) -> None:
    if as_json:
        print_json({"from": before, "to": after})
    elif before == after:
        console().print(f"already at {after or 'base'}")
    else:
        console().print(f"migrated {before or 'base'} → {after or 'base'}")
