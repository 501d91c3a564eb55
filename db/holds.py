"""Holds: a short claim on a vehicle while a clerk completes a booking; it expires by itself."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from db.availability import check_bookable
from db.blocks import Block, end_block, get_block, insert_block
from db.errors import HoldConverted, HoldExpired, HoldTaken, InvalidInput
from db.events import emit
from db.fleet import User, get_user
from db.timeutil import local_iso

DEFAULT_TTL = timedelta(minutes=10)
MAX_TTL = timedelta(hours=2)
# Roles that may release another user's hold (never convert or extend it).
SUPERVISORS = ("manager", "admin")


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
    _check_ttl(ttl)
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


def _check_ttl(ttl: timedelta) -> None:
    if not timedelta(seconds=10) <= ttl <= MAX_TTL:
        raise InvalidInput("a hold lasts between 10 seconds and 2 hours", field="ttl")


def _live_hold(conn: Connection, hold_id: int, *, doing: str) -> Block:
    hold = get_block(conn, block_id=hold_id, for_update=True)
    if hold.kind != "hold":
        # A converted hold keeps its id, so a second "book" names the booking it became.
        was_hold = conn.execute(
            text("SELECT converted_from = id FROM blocks WHERE id = :id"), {"id": hold_id}
        ).scalar()
        if was_hold:
            now = "" if hold.state == "active" else f" (now {hold.state})"
            raise HoldConverted(
                f"hold #{hold_id} is already booked: {hold.describe()}{now}",
                field="hold_id",
                hint=f"nothing to {doing}; open {hold.kind} #{hold.id} to change it",
                details={"reservation": hold.model_dump(mode="json")},
            )
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


def _person(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "full_name": user.full_name}


def _taken(hold: Block, holder: User, *, doing: str, hint: str) -> HoldTaken:
    until = local_iso(hold.expires_at, hold.time_zone)
    return HoldTaken(
        f"hold #{hold.id} on {hold.plate} is {holder.full_name}'s until {until};"
        f" only they can {doing} it",
        field="hold_id",
        hint=f"{hint}; it runs out by itself at {until}",
        details={"holder": _person(holder), "expires_at": hold.expires_at.isoformat()},
    )


def _own_hold(conn: Connection, hold_id: int, *, user_id: int, doing: str) -> Block:
    hold = _live_hold(conn, hold_id, doing=doing)
    if hold.created_by != user_id:
        holder = get_user(conn, id=hold.created_by)
        raise _taken(hold, holder, doing=doing, hint=f"pick another car, or ask {holder.full_name}")
    return hold


def convert_hold(
    conn: Connection,
    *,
    hold_id: int,
    customer_id: int,
    converted_by: int,
    reference: str | None = None,
) -> Block:
    """Turn your live hold into a reservation for the customer, keeping its period."""
    hold = _own_hold(conn, hold_id, user_id=converted_by, doing="book")
    conn.execute(
        text(
            "UPDATE blocks SET kind = 'reservation', expires_at = NULL, customer_id = :customer,"
            " reference = coalesce(:reference, reference), converted_from = id,"
            " updated_at = clock_timestamp() WHERE id = :id"
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


def extend_hold(
    conn: Connection, *, hold_id: int, extended_by: int, ttl: timedelta = DEFAULT_TTL
) -> Block:
    """Give your live hold more time: it now runs out `ttl` from now."""
    _check_ttl(ttl)
    hold = _own_hold(conn, hold_id, user_id=extended_by, doing="extend")
    conn.execute(
        text(
            "UPDATE blocks SET expires_at = clock_timestamp() + CAST(:ttl AS interval),"
            " updated_at = clock_timestamp() WHERE id = :id"
        ),
        {"ttl": ttl, "id": hold_id},
    )
    extended = get_block(conn, block_id=hold_id)
    emit(
        conn,
        kind="hold_extended",
        vehicle_id=hold.vehicle_id,
        location_id=hold.start_location_id,
        actor_id=extended_by,
        payload={**extended.model_dump(mode="json"), "previous_expires_at": hold.expires_at},
    )
    return extended


def release_hold(
    conn: Connection, *, hold_id: int, released_by: int, reason: str | None = None
) -> Block:
    """Give a hold back before it runs out: your own, or as a manager anyone's, with a reason.

    Releasing someone else's hold is recorded as `hold_released` naming who and why, so the
    holder's open pages can tell them.
    """
    hold = _live_hold(conn, hold_id, doing="release")
    if hold.created_by == released_by:
        return end_block(
            conn,
            block_id=hold.id,
            state="cancelled",
            changed_by=released_by,
            reason=(reason or "").strip() or "hold released",
        )
    holder, by = get_user(conn, id=hold.created_by), get_user(conn, id=released_by)
    if by.role not in SUPERVISORS:
        raise _taken(hold, holder, doing="release", hint=f"ask {holder.full_name}, or a manager")
    why = (reason or "").strip()
    if not why:
        raise InvalidInput(
            f"a reason is needed to release {holder.full_name}'s hold",
            field="reason",
            hint=f"say why (e.g. 'customer left'); {holder.full_name} is told",
        )
    return end_block(
        conn,
        block_id=hold.id,
        state="cancelled",
        changed_by=released_by,
        reason=why,
        event_kind="hold_released",
        event_payload={"released_by": _person(by), "holder": _person(holder)},
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
