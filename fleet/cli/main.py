"""The `fleet` entry point: every command group, registered on one Typer app."""

from __future__ import annotations

import typer

from fleet.cli import (
    alerts,
    analytics,
    board,
    database,
    demo,
    feeds,
    holds,
    pipeline,
    search,
    serve,
    users,
    vehicles,
)

app = typer.Typer(
    help="Car-rental fleet availability: status, search, holds, overdue returns and conflicts.",
    no_args_is_help=True,
    # Locals in a traceback would print the database URL, password included.
    pretty_exceptions_show_locals=False,
)

app.add_typer(database.app, name="db")
app.command("demo-data")(demo.demo_data)
app.command("demo-logins")(demo.demo_logins)
app.command()(vehicles.status)
app.command("set-status")(vehicles.set_status)
app.command()(vehicles.history)
app.command()(vehicles.rollback)
app.command("find-customer")(vehicles.find_customer)
app.command()(search.search)
app.command()(search.searches)
app.add_typer(holds.app, name="hold")
app.add_typer(users.app, name="user")
app.add_typer(alerts.overdue_app, name="overdue")
app.command()(alerts.conflicts)
app.command()(board.board)
app.command()(serve.serve)
app.command()(serve.openapi)
app.command()(analytics.analytics)
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(feeds.app, name="feeds")

if __name__ == "__main__":
    app()
