"""The `fleet` entry point: every command group, registered on one Typer app.

Command modules are imported only when their command runs (or help lists it): between them
they pull in DuckDB, pandas, polars, Alembic and Prefect, which cost a second of start-up
that `fleet analytics` or `fleet status` should not pay for the others.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

import click
import typer
from typer.core import TyperGroup
from typer.main import CommandInfo, get_command_from_info, get_group

# Command name -> (module under fleet.cli, attribute). An attribute that is a Typer app is a
# command group (`fleet db upgrade`); a function is one command. In the order `fleet --help`
# lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("database", "app"),
    "demo-data": ("demo", "demo_data"),
    "demo-logins": ("demo", "demo_logins"),
    "status": ("vehicles", "status"),
    "set-status": ("vehicles", "set_status"),
    "history": ("vehicles", "history"),
    "rollback": ("vehicles", "rollback"),
    "find-customer": ("vehicles", "find_customer"),
    "search": ("search", "search"),
    "searches": ("search", "searches"),
    "hold": ("holds", "app"),
    "user": ("users", "app"),
    "overdue": ("alerts", "overdue_app"),
    "conflicts": ("alerts", "conflicts"),
    "board": ("board", "board"),
    "serve": ("serve", "serve"),
    "openapi": ("serve", "openapi"),
    "analytics": ("analytics", "analytics"),
    "pipeline": ("pipeline", "app"),
    "feeds": ("feeds", "app"),
}


class LazyGroup(TyperGroup):
    """The top-level group: builds a command from its module the first time it is asked for."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._loaded: dict[str, click.Command] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if cmd_name not in self._loaded:
            module, attribute = COMMANDS[cmd_name]
            target = getattr(import_module(f"fleet.cli.{module}"), attribute)
            if isinstance(target, typer.Typer):
                command: click.Command = get_group(target)
                command.name = cmd_name
            else:
                command = get_command_from_info(
                    CommandInfo(name=cmd_name, callback=target),
                    pretty_exceptions_short=app.pretty_exceptions_short,
                    rich_markup_mode=app.rich_markup_mode,
                )
            self._loaded[cmd_name] = command
        return self._loaded[cmd_name]


app = typer.Typer(
    cls=LazyGroup,
    help="Car-rental fleet availability: status, search, holds, overdue returns and conflicts.",
    no_args_is_help=True,
    # Locals in a traceback would print the database URL, password included.
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main() -> None:
    """Car-rental fleet availability: status, search, holds, overdue returns and conflicts."""


if __name__ == "__main__":
    app()
