"""Holds: a short claim on a vehicle while a clerk completes a booking; it expires by itself."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from db.availability import check_bookable
from db.blocks import Block, end_block, get_block, insert_block
from db.errors import HoldExpired, InvalidInput
from db.events import emit

DEFAULT_TTL = timedelta(minutes=10)
MAX_TTL = timedelta(hours=2)


def place_hold(
    conn: Connection,
    *,
    vehicle_id: int,
    start: datetime,
    end: datetime,
    location_id: int,
    held_by: int,
    return_location_id: int | None = None,
    ttl: timedelta = DEFAULT_TTL,
    reason: str = "booking in progress",
) -> Block:
    """Hold a vehicle for [start, end) at a location; of two clerks racing, exactly one wins."""
    if not timedelta(seconds=10) <= ttl <= MAX_TTL:
        raise InvalidInput("a hold lasts between 10 seconds and 2 hours", field="ttl")
    check_bookable(conn, vehicle_id=vehicle_id, start=start, location_id=location_id)
    expires_at = conn.execute(
        text("SELECT clock_timestamp() + CAST(:ttl AS interval)"), {"ttl": ttl}
    ).scalar_one()
    return insert_block(
        conn,
        vehicle_id=vehicle_id,
        kind="hold",
        start=start,
        end=end,
        start_location_id=location_id,
        end_location_id=return_location_id or location_id,
        created_by=held_by,
        expires_at=expires_at,
        notes=reason,
    )


def _live_hold(conn: Connection, hold_id: int) -> Block:
    hold = get_block(conn, block_id=hold_id, for_update=True)
    if hold.kind != "hold":
        raise InvalidInput(f"block #{hold_id} is a {hold.kind}, not a hold", field="hold_id")
    expired = conn.execute(
        text("SELECT expires_at <= clock_timestamp() FROM blocks WHERE id = :id"), {"id": hold_id}
    ).scalar_one()
    if hold.state != "active" or expired:
        state = "expired" if hold.state == "active" else hold.state
        raise HoldExpired(
            f"hold #{hold_id} on {hold.plate} is {state}",
            field="hold_id",
            hint="search again and place a new hold; the vehicle may have been taken",
        )
    return hold


def convert_hold(
    conn: Connection,
    *,
    hold_id: int,
    customer_id: int,
    converted_by: int,
    reference: str | None = None,
) -> Block:
    """Turn a live hold into a reservation for the customer, keeping its period."""
    hold = _live_hold(conn, hold_id)
    conn.execute(
        text(
            "UPDATE blocks SET kind = 'reservation', expires_at = NULL, customer_id = :customer,"
            " reference = coalesce(:reference, reference), updated_at = clock_timestamp()"
            " WHERE id = :id"
        ),
        {"customer": customer_id, "reference": reference, "id": hold_id},
    )
    reservation = get_block(conn, block_id=hold_id)
    emit(
        conn,
        kind="reservation_created",
        vehicle_id=hold.vehicle_id,
        location_id=hold.start_location_id,
        actor_id=converted_by,
        payload={**reservation.model_dump(mode="json"), "from_hold": hold_id},
    )
    return reservation


def release_hold(conn: Connection, *, hold_id: int, released_by: int) -> Block:
    """Give a hold back before it runs out."""
    hold = _live_hold(conn, hold_id)
    return end_block(
        conn, block_id=hold.id, state="cancelled", changed_by=released_by, reason="hold released"
    )


def list_holds(conn: Connection, *, held_by: int | None = None) -> list[Block]:
    """Return the holds still running, soonest to expire first."""
    ids = conn.execute(
        text(
            "SELECT id FROM blocks WHERE kind = 'hold' AND state = 'active'"
            " AND expires_at > clock_timestamp()"
            " AND (CAST(:by AS bigint) IS NULL OR created_by = :by) ORDER BY expires_at"
        ),
        {"by": held_by},
    ).scalars()
    return [get_block(conn, block_id=i) for i in ids]
