"""Booking shapes several engine tests need: a rental already under way, possibly late."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from db import blocks, rentals
from db.fleet import Customer, Location, Vehicle
from tests.conftest import World


def rental_under_way(
    conn: Connection,
    world: World,
    vehicle: Vehicle,
    *,
    start: datetime,
    end: datetime,
    customer: Customer | None = None,
    location: Location | None = None,
    reference: str | None = None,
) -> blocks.Block:
    """Return a rental picked up at `start` and due back at `end` (which may be past).

    reserve() refuses periods a clerk could not book now, so the reservation is written
    with insert_block, as a booking made back then would have been.
    """
    where = location or world.ber
    res = blocks.insert_block(
        conn,
        vehicle_id=vehicle.id,
        kind="reservation",
        start=start,
        end=end,
        start_location_id=where.id,
        end_location_id=where.id,
        created_by=world.agent.id,
        customer_id=(customer or world.alice).id,
        reference=reference,
    )
    return rentals.pick_up(conn, block_id=res.id, handed_over_by=world.agent.id, at=start)


def booking(
    conn: Connection,
    world: World,
    vehicle: Vehicle,
    *,
    start: datetime,
    end: datetime,
    customer: Customer | None = None,
    location: Location | None = None,
    return_location: Location | None = None,
    kind: str = "reservation",
) -> blocks.Block:
    """Return a booking written straight into the timeline, whatever the car's state now."""
    where = location or world.ber
    return blocks.insert_block(
        conn,
        vehicle_id=vehicle.id,
        kind=kind,
        start=start,
        end=end,
        start_location_id=where.id,
        end_location_id=(return_location or where).id,
        created_by=world.agent.id,
        customer_id=(customer or world.bob).id,
    )
