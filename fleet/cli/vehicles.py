"""Vehicle commands: status and the fleet board, status changes, history and rollback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text
from sqlalchemy import Connection

from db import audit, lookup
from db import status as status_engine
from db.errors import InvalidInput, NotFound
from db.status import VehicleStatus
from fleet.cli import common
from fleet.cli.common import JsonFlag, console, counted, local, print_json, transaction

UserOpt = Annotated[str, typer.Option("--user", help="Your username (the change is yours).")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why: kept in the audit trail.")]


def status(
    plate: Annotated[
        str | None, typer.Argument(help="A plate, or part of one; omit for the whole fleet.")
    ] = None,
    location: Annotated[str | None, typer.Option(help="Only this location's vehicles.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="Only this status (or overdue).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show one vehicle's full status, or the fleet board with counts per location and status."""
    with transaction(as_json=as_json) as conn:
        if plate is None:
            vehicles, counts = board_data(conn, location_code=location, status=status)
        else:
            found = _match_plate(conn, plate)
    if plate is None:
        if as_json:
            print_json({"vehicles": [_with_whereabouts(v) for v in vehicles], "counts": counts})
        else:
            console().print(board_view(vehicles, counts))
    elif isinstance(found, VehicleStatus):
        if as_json:
            print_json({"vehicle": _with_whereabouts(found)})
        else:
            console().print(vehicle_view(found))
    elif as_json:
        print_json({"matches": found})
    else:
        table = common.table(
            f"{len(found)} vehicles match {plate!r}; give the full plate",
            ("plate", "vehicle", "category", "status", "location"),
        )
        for m in found:
            table.add_row(
                m.plate, f"{m.make} {m.model}", m.category_code, m.status, m.location_code or "—"
            )
        console().print(table)


def _match_plate(conn: Connection, typed: str) -> VehicleStatus | list[lookup.PlateMatch]:
    matches = lookup.find_by_plate(conn, query=typed, limit=10)
    if not matches:
        raise NotFound(
            f"no vehicle plate resembles {typed!r}",
            field="plate",
            hint="check the plate; `fleet status` lists the whole fleet",
        )
    # One exact plate wins; else one plate containing what was typed; else a sole near miss.
    for pick in ([m for m in matches if m.exact], [m for m in matches if m.score >= 0.9], matches):
        if len(pick) == 1:
            return status_engine.get_status(conn, vehicle_id=pick[0].vehicle_id)
        if pick:
            break
    return matches


def board_data(
    conn: Connection, *, location_code: str | None, status: str | None = None
) -> tuple[list[VehicleStatus], list[dict[str, Any]]]:
    """Read the fleet board (overdue first) and the counts per location and status."""
    location_id = None
    if location_code is not None:
        found = common.location(conn, location_code)
        location_id, location_code = found.id, found.code
    vehicles = status_engine.list_status(conn, location_id=location_id, status=status)
    counts = status_engine.status_counts(conn)
    if location_code is not None:
        counts = [c for c in counts if c["location"] == location_code]
    return vehicles, counts


def _with_whereabouts(v: VehicleStatus) -> dict[str, Any]:
    return {**v.model_dump(), "whereabouts": v.whereabouts}


def board_view(
    vehicles: list[VehicleStatus], counts: list[dict[str, Any]], *, title: str = "Fleet"
) -> Group:
    """Lay out the counts per location and status above the vehicle table."""
    order = [*status_engine.STATUSES, "overdue"]
    present = [s for s in order if any(c["status"] == s for c in counts)]
    pivot: dict[str, dict[str, int]] = {}
    for c in counts:
        pivot.setdefault(c["location"] or "—", {})[c["status"]] = c["vehicles"]
    # A title on this narrow table would wrap; a heading line above it does not.
    heading = Text(f"{title}: vehicles per location and status", style="bold")
    summary = Table()
    summary.add_column("location")
    for s in present:
        summary.add_column(s, justify="right", style="bold red" if s == "overdue" else None)
    summary.add_column("total", justify="right")
    for loc, by_status in sorted(pivot.items()):
        cells = [str(by_status.get(s, 0)) for s in present]
        summary.add_row(loc, *cells, str(sum(by_status.values())))

    table = common.table(
        f"{counted(len(vehicles), 'vehicle')}, overdue first",
        ("plate", "vehicle", "cat", "status", "whereabouts", "customer", "back (local)", "v"),
        wrap=("vehicle", "whereabouts", "customer"),
        right=("v",),
    )
    for v in vehicles:
        table.add_row(
            v.plate,
            f"{v.make} {v.model}",
            v.category_code,
            "OVERDUE" if v.overdue else v.status,
            v.whereabouts,
            v.customer_name or "",
            local(v.expected_available_at, v.time_zone) if v.expected_available_at else "",
            str(v.version),
            style="bold red" if v.overdue else None,
        )
    return Group(heading, summary, table)


def vehicle_view(v: VehicleStatus) -> Table:
    """Lay out everything known about one vehicle right now."""
    table = Table(title=f"{v.plate}: {v.make} {v.model} ({v.category_code})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("status", "OVERDUE (rented, past its return)" if v.overdue else v.status),
        ("whereabouts", v.whereabouts),
        ("location", v.location_code or "—"),
    ]
    if v.destination_code:
        rows.append(("destination", v.destination_code))
    if v.customer_id is not None:
        rows += [
            ("customer", v.customer_name or "—"),
            ("phone", v.customer_phone or "—"),
            ("email", v.customer_email or "—"),
        ]
    rows += [
        ("expected back", local(v.expected_available_at, v.time_zone)),
        ("overdue", "yes" if v.overdue else "no"),
        ("version", str(v.version)),
        ("last updated", f"{local(v.last_updated, v.time_zone)} by {v.updated_by_name or '—'}"),
    ]
    for name, value in rows:
        table.add_row(name, value, style="bold red" if v.overdue and name == "status" else None)
    return table


def set_status(
    plate: Annotated[str, typer.Argument(help="The vehicle's plate.")],
    new_status: Annotated[str, typer.Argument(metavar="STATUS", help="The new status.")],
    reason: ReasonOpt,
    username: UserOpt,
    expected_version: Annotated[
        int | None,
        typer.Option(help="The version you looked at; refused if someone changed it since."),
    ] = None,
    location: Annotated[str | None, typer.Option(help="Where the vehicle now is.")] = None,
    destination: Annotated[str | None, typer.Option(help="Where it is going (transit).")] = None,
    until: Annotated[
        str | None, typer.Option(help="When it is expected free, ISO 8601 with offset.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a vehicle's status, checked against the allowed transitions and logged."""
    with transaction(as_json=as_json) as conn:
        staff = common.user(conn, username)
        car = common.vehicle(conn, plate)
        given: dict[str, Any] = {}
        if location is not None:
            given["location_id"] = common.location(conn, location).id
        if destination is not None:
            given["destination_location_id"] = common.location(conn, destination).id
        if until is not None:
            given["expected_available_at"] = common.parse_time(until, "--until")
        change = status_engine.change_status(
            conn,
            vehicle_id=car.id,
            new_status=new_status,
            changed_by=staff.id,
            reason=reason,
            expected_version=expected_version,
            **given,
        )
    if as_json:
        print_json({**change.model_dump(), "status": _with_whereabouts(change.status)})
        return
    console().print(
        f"{change.status.plate}: {change.old_status} → {change.status.status}"
        f" ({change.status.whereabouts}), version {change.status.version}, change #{change.log_id}",
    )


def history(
    plate: Annotated[str | None, typer.Argument(help="Only this vehicle's changes.")] = None,
    username: Annotated[
        str | None, typer.Option("--user", help="Only this user's changes.")
    ] = None,
    days: Annotated[int, typer.Option(help="How many days back.")] = 90,
    limit: Annotated[int, typer.Option(help="At most this many changes.")] = 200,
    as_json: JsonFlag = False,
) -> None:
    """Show who changed what and when, newest first."""
    with transaction(as_json=as_json) as conn:
        if not 1 <= days <= 3650:
            raise InvalidInput("--days must be between 1 and 3650", field="days")
        vehicle_id = common.vehicle(conn, plate).id if plate else None
        user_id = common.user(conn, username).id if username else None
        entries = audit.history(
            conn,
            vehicle_id=vehicle_id,
            user_id=user_id,
            since=datetime.now(UTC) - timedelta(days=days),
            limit=limit,
        )
        zones = {loc.code: loc.time_zone for loc in common.locations_by_id(conn).values()}
    if as_json:
        print_json(entries)
        return
    table = common.table(
        f"{counted(len(entries), 'status change')} in the last {days} days",
        ("#", "when (local)", "plate", "change", "where", "by", "reason", "rolled back"),
        wrap=("by", "reason"),
    )
    for e in entries:
        where = e.new_location_code or e.old_location_code
        moved = (
            f"{e.old_location_code or '—'} → {e.new_location_code or '—'}"
            if e.old_location_code != e.new_location_code
            else where or "—"
        )
        table.add_row(
            str(e.id),
            local(e.changed_at, zones.get(where or "")),
            e.plate,
            f"{e.old_status or 'new'} → {e.new_status}",
            moved,
            e.changed_by_name,
            e.change_reason,
            f"by #{e.reverted_by_log_id}" if e.reverted_by_log_id else "",
        )
    console().print(table)


def rollback(
    log_id: Annotated[int, typer.Argument(help="The status change to undo (see history).")],
    username: UserOpt,
    reason: ReasonOpt,
    as_json: JsonFlag = False,
) -> None:
    """Undo a wrong status change by restoring the state before it, as a new logged change."""
    with transaction(as_json=as_json) as conn:
        staff = common.user(conn, username)
        change = audit.rollback_change(conn, log_id=log_id, rolled_back_by=staff.id, reason=reason)
    if as_json:
        print_json(change)
        return
    console().print(
        f"change #{log_id} rolled back by change #{change.log_id}: {change.status.plate} is"
        f" {change.status.status} again ({change.status.whereabouts}),"
        f" version {change.status.version}",
    )


def find_customer(
    name: Annotated[str, typer.Argument(help="The customer's name, or part of it.")],
    as_json: JsonFlag = False,
) -> None:
    """Find a customer's current rentals and upcoming reservations by name."""
    with transaction(as_json=as_json) as conn:
        matches = lookup.find_rentals_by_customer(conn, name=name)
        zones = {loc.code: loc.time_zone for loc in common.locations_by_id(conn).values()}
    if as_json:
        print_json(matches)
        return
    table = common.table(
        f"rentals and reservations for {name!r}: {len(matches)}",
        ("customer", "phone", "email", "booking", "plate", "from (local)", "to (local)"),
        wrap=("customer", "email"),
    )
    for m in matches:
        table.add_row(
            m.customer_name,
            m.customer_phone or "—",
            m.customer_email or "—",
            f"{m.kind} #{m.block_id}",
            m.plate,
            f"{local(m.start, zones.get(m.pickup_code))} {m.pickup_code}",
            f"{local(m.end, zones.get(m.return_code))} {m.return_code}",
        )
    console().print(table)
