"""What needs a person now: overdue returns and bookings their vehicle cannot honour."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from db import conflicts as conflicts_engine
from db import overdue as overdue_engine
from fleet.cli import common
from fleet.cli.common import (
    JsonFlag,
    console,
    counted,
    duration,
    error_console,
    local,
    print_json,
    transaction,
)
from fleet.settings import get_settings

LocationOpt = Annotated[str | None, typer.Option(help="Only this location.")]

overdue_app = typer.Typer(help="Rentals past their expected return.")


@overdue_app.callback(invoke_without_command=True)
def overdue(ctx: typer.Context, location: LocationOpt = None, as_json: JsonFlag = False) -> None:
    """List rentals past their expected return: level, late fee, contact, booking at risk."""
    if ctx.invoked_subcommand is not None:
        return
    with transaction(as_json=as_json) as conn:
        location_id = common.location(conn, location).id if location else None
        late = overdue_engine.list_overdue(
            conn,
            location_id=location_id,
            thresholds=overdue_engine.configured_thresholds(get_settings()),
        )
    if as_json:
        print_json(late)
        return
    table = common.table(
        f"{counted(len(late), 'overdue rental')}, most overdue first",
        ("plate", "customer", "phone", "email", "lot", "due back (local)", "late by", "level",
         "late fee", "next booking at risk"),
        wrap=("customer", "email"),
        right=("level", "late fee"),
    )  # fmt: skip
    for o in late:
        at_risk = (
            f"#{o.next_block_id} from {local(o.next_block_start, o.time_zone)}"
            if o.next_block_id
            else ""
        )
        table.add_row(
            o.plate,
            o.customer_name,
            o.customer_phone or "—",
            o.customer_email or "—",
            o.location_code,
            local(o.expected_return, o.time_zone),
            duration(o.overdue_by),
            str(o.escalation_level),
            f"{o.estimated_late_fee:.2f}",
            at_risk,
            style="bold red" if o.escalation_level > 1 else None,
        )
    console().print(table)


@overdue_app.command()
def refresh(as_json: JsonFlag = False) -> None:
    """Bring the overdue alerts up to date, escalating and closing them as needed."""
    with transaction(as_json=as_json) as conn:
        summary = overdue_engine.refresh_overdue(
            conn, thresholds=overdue_engine.configured_thresholds(get_settings())
        )
    if as_json:
        print_json(summary)
        return
    console().print(
        f"{summary.open} overdue: {summary.new} new, {summary.escalated} escalated,"
        f" {summary.resolved} resolved",
    )


def conflicts(
    location: LocationOpt = None,
    hours: Annotated[float, typer.Option(help="Look this many hours ahead.")] = 48,
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh", help="Announce new, newly critical and cleared conflicts as events."
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """List bookings their vehicle cannot honour, with ways to resolve each."""
    with transaction(as_json=as_json) as conn:
        if refresh:
            summary = conflicts_engine.refresh_conflicts(conn, horizon=timedelta(hours=hours))
            if not as_json:
                error_console().print(
                    f"refreshed: {summary.detected} new, {summary.escalated} now critical,"
                    f" {summary.cleared} cleared"
                )
        location_id = common.location(conn, location).id if location else None
        found = conflicts_engine.list_conflicts(
            conn, location_id=location_id, horizon=timedelta(hours=hours)
        )
    if as_json:
        print_json(found)
        return
    table = common.table(
        f"{counted(len(found), 'conflict')} in the next {hours:g} hours",
        ("severity", "booking", "plate", "pickup (local)", "customer", "why", "options"),
        wrap=("customer", "why", "options"),
    )
    table.show_lines = True
    for c in found:
        table.add_row(
            c.severity.upper() if c.severity == "critical" else c.severity,
            f"{c.block_kind} #{c.block_id}",
            c.plate,
            f"{local(c.starts, c.time_zone)} {c.location_code}",
            f"{c.customer_name or '—'} {c.customer_phone or ''}".strip(),
            c.cause,
            "\n".join(f"• {s.description}" for s in c.suggestions) or "none found",
            style="bold red" if c.severity == "critical" else None,
        )
    console().print(table)
