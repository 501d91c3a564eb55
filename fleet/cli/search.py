"""Availability search, what to offer when nothing fits, and each user's saved searches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table

from db import availability, saved_searches
from db.availability import Alternatives, SearchHit
from db.errors import InvalidInput
from fleet.cli import common
from fleet.cli.common import JsonFlag, console, duration, local, print_json, transaction


def search(
    start: Annotated[str, typer.Option("--from", help="Pickup, ISO 8601 with offset.")],
    end: Annotated[str, typer.Option("--to", help="Return, ISO 8601 with offset.")],
    location: Annotated[str, typer.Option(help="Pickup location code.")],
    category: Annotated[str | None, typer.Option(help="Vehicle category code.")] = None,
    feature: Annotated[
        list[str] | None, typer.Option(help="A feature the vehicle must have (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many vehicles.")] = 20,
    save: Annotated[str | None, typer.Option(help="Also save these criteria under a name.")] = None,
    username: Annotated[str | None, typer.Option("--user", help="Whose saved search.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Find vehicles free for a period at a location; offer alternatives when none are."""
    with transaction(as_json=as_json) as conn:
        begins = common.parse_time(start, "--from")
        ends = common.parse_time(end, "--to")
        lot = common.location(conn, location)
        cat = common.category(conn, category) if category else None
        features = feature or []
        hits = availability.search(
            conn,
            start=begins,
            end=ends,
            location_id=lot.id,
            category_id=cat.id if cat else None,
            features=features,
            limit=limit,
        )
        offer = None
        if not hits and cat is not None:
            offer = availability.alternatives(
                conn,
                start=begins,
                end=ends,
                location_id=lot.id,
                category_id=cat.id,
                features=features,
            )
        saved = None
        if save is not None:
            if username is None:
                raise InvalidInput("--save needs --user: saved searches belong to a user")
            criteria: dict[str, Any] = {
                "location": lot.code,
                "features": sorted(features),
                "duration_hours": round((ends - begins).total_seconds() / 3600, 2),
                "lead_hours": round((begins - datetime.now(UTC)).total_seconds() / 3600, 2),
            }
            if cat is not None:
                criteria["category"] = cat.code
            owner = common.user(conn, username)
            saved = saved_searches.save(conn, user_id=owner.id, name=save, criteria=criteria)
        zones = {loc.id: loc.time_zone for loc in common.locations_by_id(conn).values()}
    if as_json:
        print_json({"results": hits, "alternatives": offer, "saved": saved})
        return
    out = console()
    when = f"{local(begins, lot.time_zone)} to {local(ends, lot.time_zone)}"
    if hits:
        out.print(_hits_table(hits, f"{len(hits)} free at {lot.code}, {when}", lot.time_zone))
    else:
        out.print(f"nothing free at {lot.code}, {when}")
        if offer is None:
            out.print("give --category to see upgrades, other lots and the nearest free times")
        else:
            out.print(_alternatives_view(offer, lot.time_zone, zones))
    if saved is not None:
        out.print(f"saved as {saved.name!r}")


def _hits_table(hits: list[SearchHit], title: str, tz: str) -> Table:
    table = common.table(
        title,
        ("plate", "vehicle", "cat", "features", "km", "free since", "free until"),
        wrap=("vehicle", "features"),
        right=("km",),
    )
    for h in hits:
        table.add_row(
            h.plate,
            f"{h.make} {h.model} {h.year}",
            h.category_code,
            ", ".join(h.features),
            f"{h.odometer_km:,}",
            local(h.free_since, tz) if h.free_since else "idle",
            local(h.free_until, tz) if h.free_until else "open",
        )
    return table


def _alternatives_view(offer: Alternatives, tz: str, zones: dict[int, str]) -> Group:
    parts: list[Any] = []
    if offer.upgrades:
        parts.append(_hits_table(offer.upgrades, "upgrades at this lot", tz))
    if offer.other_locations:
        table = common.table(
            "same category at other lots, by transfer",
            ("from", "plate", "vehicle", "drive", "must leave by (their time)"),
            wrap=("vehicle",),
        )
        for o in offer.other_locations:
            table.add_row(
                o.location_code,
                o.vehicle.plate,
                f"{o.vehicle.make} {o.vehicle.model}",
                duration(o.transfer_time),
                local(o.depart_by, zones.get(o.location_id)),
            )
        parts.append(table)
    if offer.nearest_windows:
        table = common.table(
            "nearest free periods of the same length", ("plate", "from (local)", "to (local)")
        )
        for w in offer.nearest_windows:
            table.add_row(w.plate, local(w.start, tz), local(w.end, tz))
        parts.append(table)
    if not parts:
        parts.append("no upgrade, other lot or nearby period either")
    return Group(*parts)


def searches(
    username: Annotated[str, typer.Option("--user", help="Whose saved searches.")],
    as_json: JsonFlag = False,
) -> None:
    """List a user's saved searches."""
    with transaction(as_json=as_json) as conn:
        owner = common.user(conn, username)
        saved = saved_searches.list_saved(conn, user_id=owner.id)
    if as_json:
        print_json(saved)
        return
    table = common.table(
        f"saved searches of {owner.username}",
        ("name", "location", "category", "features", "hours", "starts in (h)"),
        wrap=("name", "features"),
        right=("hours", "starts in (h)"),
    )
    for s in saved:
        c = s.criteria
        table.add_row(
            s.name,
            str(c.get("location", "")),
            str(c.get("category", "any")),
            ", ".join(c.get("features", [])),
            str(c.get("duration_hours", "")),
            str(c.get("lead_hours", "")),
        )
    console().print(table)
