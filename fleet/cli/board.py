"""`fleet board`: the live fleet board, redrawn when the database announces a change."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from typing import Annotated

import psycopg
import typer
from psycopg import sql
from rich.console import Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.text import Text
from sqlalchemy.exc import OperationalError

from db.database import libpq_url
from db.errors import FleetError, InvalidInput
from db.events import CHANNEL
from fleet.cli import common
from fleet.cli.common import console, transaction
from fleet.cli.vehicles import board_data, board_view

# Changes arrive in bursts (a demo load, a busy morning): gather them before redrawing.
_SETTLE_SECONDS = 0.25


def board(
    location: Annotated[str | None, typer.Option(help="Only this location's vehicles.")] = None,
    interval: Annotated[
        float, typer.Option(help="Redraw at least this often (seconds), changes or not.")
    ] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Draw one frame and exit.")] = False,
) -> None:
    """Show the live fleet board: counts per location and status, then vehicles, overdue first."""
    with transaction() as conn:
        if not 0.2 <= interval <= 3600:
            raise InvalidInput("--interval must be between 0.2 and 3600 seconds", field="interval")
        vehicles, counts = board_data(conn, location_code=location)
    if once:
        console().print(board_view(vehicles, counts, title=_title(location)))
        return
    url = libpq_url(common.engine().url)
    listener = listen(url)
    try:
        with Live(console=console(), auto_refresh=False, screen=True) as live:
            while True:
                live.update(_frame(location, listening=listener is not None), refresh=True)
                if listener is None:
                    time.sleep(interval)  # no LISTEN connection: fall back to polling
                    listener = listen(url)
                elif not wait_for_change(listener, interval):
                    listener = listen(url)  # the connection dropped: reconnect, or poll
    except KeyboardInterrupt:
        pass
    finally:
        if listener is not None:
            with contextlib.suppress(psycopg.Error):
                listener.close()


def listen(url: str) -> psycopg.Connection | None:
    """Open a connection listening on the events channel, or None if the server is away."""
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
    except psycopg.Error:
        return None
    return conn


def wait_for_change(listener: psycopg.Connection, timeout: float) -> bool:
    """Wait until a change is announced or the timeout passes; False if the connection broke."""
    try:
        # Each notifies() generator holds the connection's lock until exhausted: never nest them.
        announced = list(listener.notifies(timeout=timeout, stop_after=1))
        if announced:
            for _ in listener.notifies(timeout=_SETTLE_SECONDS):
                pass
    except psycopg.Error:
        with contextlib.suppress(psycopg.Error):
            listener.close()
        return False
    return True


def _title(location: str | None) -> str:
    return f"Fleet {location.upper()}" if location else "Fleet"


def _frame(location: str | None, *, listening: bool) -> RenderableType:
    stamp = datetime.now(UTC).astimezone().strftime("%H:%M:%S")
    how = "redrawn on every change" if listening else "not notified of changes; polling"
    header = Text(f"updated {stamp} · {how} · Ctrl-C to leave", style="dim")
    try:
        with common.engine().begin() as conn:
            vehicles, counts = board_data(conn, location_code=location)
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else "no answer"
        return Panel(
            f"the database is unreachable ({reason}); retrying",
            title=f"Fleet board, {stamp}",
            style="red",
        )
    except FleetError as err:
        return Panel(str(err), title=f"Fleet board, {stamp}", style="red")
    # The header goes on top: a big fleet runs past the bottom of the screen.
    return Group(header, board_view(vehicles, counts, title=_title(location)))
