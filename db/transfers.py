"""Transfers: moving vehicles between locations, with departure, ETA and lateness."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import Connection, text

from db.blocks import Block, end_block, get_block, insert_block, location_at, mark_started
from db.errors import InvalidInput, NotAvailable
from db.fleet import Location, get_location
from db.status import change_status
from db.timeutil import Duration, require_aware

# Road distance is longer than the great circle, and a driver needs time at both ends.
ROAD_FACTOR = 1.3
AVERAGE_KMH = 70.0
HANDLING = timedelta(minutes=30)


class Transfer(BaseModel):
    """A vehicle moving (or scheduled to move) between two locations."""

    block_id: int
    vehicle_id: int
    plate: str
    from_code: str
    to_code: str
    departs_at: datetime
    eta: datetime
    departed_at: datetime | None
    arrived_at: datetime | None
    state: str
    late_by: Duration | None


def distance_km(a: Location, b: Location) -> float | None:
    """Return the great-circle distance between two locations, if both have coordinates."""
    if None in (a.latitude, a.longitude, b.latitude, b.longitude):
        return None
    lat1, lon1, lat2, lon2 = map(math.radians, (a.latitude, a.longitude, b.latitude, b.longitude))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def transfer_duration(a: Location, b: Location) -> timedelta:
    """Estimate how long driving a vehicle from a to b takes, handling included."""
    if a.id == b.id:
        return timedelta(0)
    km = distance_km(a, b)
    if km is None:
        return timedelta(hours=4)  # unknown geography: a cautious half-day guess
    minutes = math.ceil(km * ROAD_FACTOR / AVERAGE_KMH * 60 / 15) * 15
    return HANDLING + timedelta(minutes=minutes)


def schedule_transfer(
    conn: Connection,
    *,
    vehicle_id: int,
    to_location_id: int,
    depart_at: datetime,
    created_by: int,
    eta: datetime | None = None,
    reference: str | None = None,
) -> Block:
    """Book a transfer of a vehicle from where it will be at depart_at to another location."""
    require_aware(depart_at, "depart_at")
    origin_id = location_at(conn, vehicle_id=vehicle_id, at=depart_at)
    if origin_id is None:
        raise NotAvailable("the vehicle is not on a lot at that time", field="depart_at")
    if origin_id == to_location_id:
        raise InvalidInput(
            "the vehicle is already at that location at that time", field="to_location_id"
        )
    origin = get_location(conn, id=origin_id)
    destination = get_location(conn, id=to_location_id)
    eta = eta or depart_at + transfer_duration(origin, destination)
    require_aware(eta, "eta")
    return insert_block(
        conn,
        vehicle_id=vehicle_id,
        kind="transfer",
        start=depart_at,
        end=eta,
        start_location_id=origin_id,
        end_location_id=to_location_id,
        created_by=created_by,
        reference=reference,
        event_payload={"from": origin.code, "to": destination.code},
    )


def dispatch(
    conn: Connection, *, block_id: int, changed_by: int, at: datetime | None = None
) -> Block:
    """Record that the transfer left: the vehicle goes in transit with its destination and ETA."""
    block = get_block(conn, block_id=block_id, for_update=True)
    _require_transfer(block)
    if block.started_at is not None:
        raise InvalidInput(f"transfer #{block.id} already departed", field="block_id")
    mark_started(conn, block_id=block_id, at=at, changed_by=changed_by)
    change_status(
        conn,
        vehicle_id=block.vehicle_id,
        new_status="in_transit",
        changed_by=changed_by,
        reason=f"transfer #{block.id} departed",
        destination_location_id=block.end_location_id,
        expected_available_at=block.end,
        block_id=block.id,
        metadata={"block_id": block.id},
    )
    return get_block(conn, block_id=block_id)


def arrive(
    conn: Connection, *, block_id: int, changed_by: int, at: datetime | None = None
) -> Block:
    """Record the arrival: the transfer completes and the vehicle is available at its new lot."""
    block = get_block(conn, block_id=block_id)
    _require_transfer(block)
    if block.started_at is None:
        # Nobody recorded the departure: assume it left as scheduled, not when it arrived.
        dispatch(conn, block_id=block_id, changed_by=changed_by, at=block.start)
    ended = end_block(
        conn, block_id=block_id, state="completed", changed_by=changed_by, reason="arrived", at=at
    )
    change_status(
        conn,
        vehicle_id=block.vehicle_id,
        new_status="available",
        changed_by=changed_by,
        reason=f"transfer #{block.id} arrived",
        location_id=block.end_location_id,
        metadata={"block_id": block.id},
    )
    return ended


def _require_transfer(block: Block) -> None:
    if block.kind != "transfer":
        raise InvalidInput(f"block #{block.id} is a {block.kind}, not a transfer", field="block_id")
    if block.state != "active":
        raise InvalidInput(f"transfer #{block.id} is already {block.state}", field="block_id")


def list_transfers(
    conn: Connection,
    *,
    location_id: int | None = None,
    include_done_since: datetime | None = None,
) -> list[Transfer]:
    """Return open transfers (and, optionally, finished ones since a time) with lateness."""
    rows = conn.execute(
        text(
            "SELECT b.id AS block_id, b.vehicle_id, v.plate, lf.code AS from_code,"
            " lt.code AS to_code, lower(b.period) AS departs_at, b.scheduled_end AS eta,"
            " b.started_at AS departed_at, b.finished_at AS arrived_at, b.state,"
            " CASE WHEN coalesce(b.finished_at, now()) > b.scheduled_end"
            "      THEN coalesce(b.finished_at, now()) - b.scheduled_end END AS late_by"
            " FROM blocks b JOIN vehicles v ON v.id = b.vehicle_id"
            " JOIN locations lf ON lf.id = b.start_location_id"
            " JOIN locations lt ON lt.id = b.end_location_id"
            " WHERE b.kind = 'transfer'"
            " AND (b.state = 'active' OR (b.state = 'completed' AND b.finished_at >= :since))"
            " AND (CAST(:loc AS bigint) IS NULL"
            "      OR :loc IN (b.start_location_id, b.end_location_id))"
            " ORDER BY b.scheduled_end"
        ),
        {"loc": location_id, "since": include_done_since},
    ).mappings()
    return [Transfer.model_validate(dict(r)) for r in rows]
