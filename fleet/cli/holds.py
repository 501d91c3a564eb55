"""`fleet hold`: claim a vehicle while a booking is completed; convert, extend or release it."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from db import fleet, holds
from db.blocks import Block
from fleet.cli import common
from fleet.cli.common import JsonFlag, console, local, print_json, transaction

app = typer.Typer(help="Hold a vehicle while a booking is completed.", no_args_is_help=True)

UserOpt = Annotated[str, typer.Option("--user", help="Your username.")]
HoldId = Annotated[int, typer.Argument(help="The hold's number.")]


@app.command()
def place(
    plate: Annotated[str, typer.Argument(help="The vehicle's plate.")],
    start: Annotated[str, typer.Option("--from", help="Pickup, ISO 8601 with offset.")],
    end: Annotated[str, typer.Option("--to", help="Return, ISO 8601 with offset.")],
    location: Annotated[str, typer.Option(help="Pickup location code.")],
    username: UserOpt,
    minutes: Annotated[float, typer.Option(help="How long the hold lasts.")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """Hold a vehicle for a period at a location; it runs out by itself."""
    with transaction(as_json=as_json) as conn:
        staff = common.user(conn, username)
        car = common.vehicle(conn, plate)
        lot = common.location(conn, location)
        hold = holds.place_hold(
            conn,
            vehicle_id=car.id,
            start=common.parse_time(start, "--from"),
            end=common.parse_time(end, "--to"),
            location_id=lot.id,
            held_by=staff.id,
            ttl=timedelta(minutes=minutes),
        )
    if as_json:
        print_json(hold)
        return
    console().print(
        f"hold #{hold.id} on {hold.plate} at {lot.code},"
        f" {local(hold.start, lot.time_zone)} to {local(hold.end, lot.time_zone)};"
        f" runs out {local(hold.expires_at, lot.time_zone)}",
    )


@app.command()
def convert(
    hold_id: HoldId,
    customer: Annotated[int, typer.Option(help="The customer's id.")],
    username: UserOpt,
    reference: Annotated[str | None, typer.Option(help="Booking reference.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Turn a live hold into a reservation for a customer."""
    with transaction(as_json=as_json) as conn:
        staff = common.user(conn, username)
        who = fleet.get_customer(conn, id=customer)
        booking = holds.convert_hold(
            conn, hold_id=hold_id, customer_id=who.id, converted_by=staff.id, reference=reference
        )
        tz = fleet.get_location(conn, id=booking.start_location_id).time_zone
    if as_json:
        print_json(booking)
        return
    console().print(
        f"reservation #{booking.id} for {who.name} on {booking.plate},"
        f" {local(booking.start, tz)} to {local(booking.end, tz)}",
    )


@app.command()
def extend(
    hold_id: HoldId,
    username: UserOpt,
    minutes: Annotated[float, typer.Option(help="It runs out this long from now.")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """Give your hold more time; only the user who placed it can."""
    with transaction(as_json=as_json) as conn:
        staff = common.user(conn, username)
        hold = holds.extend_hold(
            conn, hold_id=hold_id, extended_by=staff.id, ttl=timedelta(minutes=minutes)
        )
    if as_json:
        print_json(hold)
        return
    console().print(
        f"hold #{hold.id} on {hold.plate} now runs out {local(hold.expires_at, hold.time_zone)}"
    )


@app.command()
def release(
    hold_id: HoldId,
    username: UserOpt,
    reason: Annotated[
        str | None,
        typer.Option(help="Why; needed to release someone else's hold (managers and admins)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Give a hold back before it runs out: your own, or as a manager anyone's with --reason."""
    with transaction(as_json=as_json) as conn:
        staff = common.user(conn, username)
        released = holds.release_hold(conn, hold_id=hold_id, released_by=staff.id, reason=reason)
    if as_json:
        print_json(released)
        return
    console().print(f"hold #{released.id} on {released.plate} released")


@app.command("list")
def list_(
    username: Annotated[str | None, typer.Option("--user", help="Only this user's holds.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List the holds still running, soonest to run out first."""
    with transaction(as_json=as_json) as conn:
        held_by = common.user(conn, username).id if username else None
        running = holds.list_holds(conn, held_by=held_by)
        lots = common.locations_by_id(conn)
    if as_json:
        print_json(running)
        return
    console().print(_table(running, lots))


def _table(running: list[Block], lots: dict[int, fleet.Location]) -> Table:
    table = common.table(
        f"{common.counted(len(running), 'hold')} running",
        ("hold", "plate", "at", "from (local)", "to (local)", "runs out"),
    )
    for h in running:
        lot = lots[h.start_location_id]
        table.add_row(
            f"#{h.id}",
            h.plate,
            lot.code,
            local(h.start, lot.time_zone),
            local(h.end, lot.time_zone),
            local(h.expires_at, lot.time_zone),
        )
    return table
