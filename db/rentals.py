"""Reservations and rental contracts: book, pick up, extend, return, and actual vs scheduled."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Connection, text

from db.availability import check_bookable
from db.blocks import (
    Block,
    buffer_for,
    end_block,
    get_block,
    insert_block,
    mark_started,
    move_block,
)
from db.errors import InvalidInput
from db.fleet import get_customer
from db.status import StatusChange, change_status, get_status
from db.timeutil import Duration, require_aware


class ReturnRecord(BaseModel):
    """One rental's scheduled against actual return, as the story asks for every rental."""

    block_id: int
    plate: str
    customer_name: str
    scheduled_return: datetime
    actual_return: datetime | None
    state: str
    late_by: Duration | None
    on_time: bool | None


def reserve(
    conn: Connection,
    *,
    vehicle_id: int,
    start: datetime,
    end: datetime,
    pickup_location_id: int,
    customer_id: int,
    booked_by: int,
    return_location_id: int | None = None,
    reference: str | None = None,
) -> Block:
    """Reserve a vehicle for a customer directly (without a prior hold)."""
    get_customer(conn, id=customer_id)
    check_bookable(conn, vehicle_id=vehicle_id, start=start, location_id=pickup_location_id)
    return insert_block(
        conn,
        vehicle_id=vehicle_id,
        kind="reservation",
        start=start,
        end=end,
        start_location_id=pickup_location_id,
        end_location_id=return_location_id or pickup_location_id,
        created_by=booked_by,
        customer_id=customer_id,
        reference=reference,
    )


def cancel_reservation(
    conn: Connection, *, block_id: int, cancelled_by: int, reason: str = "cancelled"
) -> Block:
    """Cancel a reservation that has not been picked up; its period is free again at once."""
    block = get_block(conn, block_id=block_id)
    if block.kind != "reservation":
        raise InvalidInput(
            f"block #{block_id} is a {block.kind}; only reservations can be cancelled",
            field="block_id",
            hint="a started rental ends with a return",
        )
    return end_block(
        conn, block_id=block_id, state="cancelled", changed_by=cancelled_by, reason=reason
    )


def pick_up(
    conn: Connection, *, block_id: int, handed_over_by: int, at: datetime | None = None
) -> Block:
    """Start the rental from its reservation: the car goes out with the customer."""
    block = get_block(conn, block_id=block_id, for_update=True)
    if block.kind != "reservation" or block.state != "active":
        raise InvalidInput(
            f"block #{block_id} is a {block.state} {block.kind}, not an open reservation",
            field="block_id",
        )
    at = at or conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    require_aware(at, "at")
    # A savepoint, so a refused hand-over leaves the reservation as it was even when the
    # caller catches the error and carries on in the same transaction.
    with conn.begin_nested():
        current = get_status(conn, vehicle_id=block.vehicle_id)
        if (
            current.status == "cleaning"
            and current.expected_available_at is not None
            and current.expected_available_at <= at
        ):
            # The prep buffer after the last return is over (search already offers the car
            # from then on), so the hand-over must not wait for someone to tick "clean".
            change_status(
                conn,
                vehicle_id=block.vehicle_id,
                new_status="available",
                changed_by=handed_over_by,
                reason=f"prep time over at pick-up of rental #{block.id}",
                metadata={"block_id": block.id},
            )
        change_status(
            conn,
            vehicle_id=block.vehicle_id,
            new_status="rented",
            changed_by=handed_over_by,
            reason=f"rental #{block.id} picked up",
            customer_id=block.customer_id,
            expected_available_at=block.end,
            block_id=block.id,
            location_id=block.start_location_id,
            metadata={"block_id": block.id, "reference": block.reference},
        )
        mark_started(conn, block_id=block_id, at=at, changed_by=handed_over_by)
        conn.execute(text("UPDATE blocks SET kind = 'rental' WHERE id = :id"), {"id": block_id})
    return get_block(conn, block_id=block_id)


def extend_rental(conn: Connection, *, block_id: int, new_end: datetime, extended_by: int) -> Block:
    """Move the expected return; refused, naming the blocking booking, if it would collide."""
    require_aware(new_end, "new_end")
    block = get_block(conn, block_id=block_id)
    if block.kind not in ("rental", "reservation") or block.state != "active":
        raise InvalidInput(f"block #{block_id} is not an open rental", field="block_id")
    moved = move_block(
        conn,
        block_id=block_id,
        start=block.start,
        end=new_end,
        changed_by=extended_by,
        event_kind=f"{block.kind}_extended",
    )
    if block.kind == "rental":
        change_status(
            conn,
            vehicle_id=block.vehicle_id,
            new_status="rented",
            changed_by=extended_by,
            reason=f"rental #{block.id} extended",
            expected_available_at=new_end,
            metadata={"block_id": block.id, "previous_end": block.end.isoformat()},
            allow_same=True,
        )
    return moved


def return_vehicle(
    conn: Connection,
    *,
    block_id: int,
    received_by: int,
    at: datetime | None = None,
    location_id: int | None = None,
    odometer_km: int | None = None,
    needs_maintenance: bool = False,
    notes: str = "",
) -> Block:
    """Check a rental back in: an early return frees the rest of its period at once.

    The car goes to cleaning for its category's prep buffer (or to maintenance when damaged).
    """
    block = get_block(conn, block_id=block_id)
    if block.kind != "rental" or block.state != "active":
        raise InvalidInput(
            f"block #{block_id} is a {block.state} {block.kind}, not an open rental",
            field="block_id",
        )
    if odometer_km is not None and odometer_km < 0:
        raise InvalidInput("odometer reading cannot be negative", field="odometer_km")
    at = at or conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    require_aware(at, "at")
    where = location_id or block.end_location_id
    # The notes stay whole in the event and the log entry's metadata; only the log's one-line
    # reason (200 characters at most) is shortened.
    ended = end_block(
        conn,
        block_id=block_id,
        state="completed",
        changed_by=received_by,
        reason=notes or "returned",
        at=at,
        end_location_id=where,
        event_payload={"notes": notes} if notes else None,
    )
    if odometer_km is not None:
        conn.execute(
            text("UPDATE vehicles SET odometer_km = greatest(odometer_km, :km) WHERE id = :v"),
            {"km": odometer_km, "v": block.vehicle_id},
        )
    current = get_status(conn, vehicle_id=block.vehicle_id)
    if current.status == "rented":
        buffer = buffer_for(conn, vehicle_id=block.vehicle_id, kind="rental")
        change_status(
            conn,
            vehicle_id=block.vehicle_id,
            new_status="maintenance" if needs_maintenance else "cleaning",
            changed_by=received_by,
            reason=_one_line(f"rental #{block.id} returned" + (f": {notes}" if notes else "")),
            location_id=where,
            expected_available_at=None if needs_maintenance else at + buffer,
            metadata={
                "block_id": block.id,
                "returned_at": at.isoformat(),
                "scheduled_return": block.scheduled_end.isoformat(),
                "odometer_km": odometer_km,
                "notes": notes,
            },
        )
    return ended


def amend_return(
    conn: Connection,
    *,
    block_id: int,
    amended_by: int,
    odometer_km: int | None = None,
    notes: str = "",
    why: str = "corrected",
) -> StatusChange:
    """Correct a returned rental's odometer reading and notes, as an entry in the audit trail.

    The car's status stays what it is now; the entry carries the corrected values whole.
    The car's odometer takes the corrected reading when it still shows the one being
    corrected (a misread one may have been too high); after a later reading it only grows.
    """
    block = get_block(conn, block_id=block_id, for_update=True)
    if block.kind != "rental" or block.state != "completed":
        raise InvalidInput(
            f"block #{block_id} is a {block.state} {block.kind}, not a returned rental",
            field="block_id",
            hint="only the return of a completed rental can be corrected",
        )
    if odometer_km is not None and odometer_km < 0:
        raise InvalidInput("odometer reading cannot be negative", field="odometer_km")
    before = conn.execute(
        text(
            "SELECT metadata->'odometer_km' AS km FROM vehicle_status_log"
            " WHERE vehicle_id = :v AND metadata->'block_id' = to_jsonb(CAST(:b AS bigint))"
            " AND metadata ? 'odometer_km' ORDER BY id DESC LIMIT 1"
        ),
        {"v": block.vehicle_id, "b": block_id},
    ).scalar()
    if odometer_km is not None:
        conn.execute(
            text(
                "UPDATE vehicles SET odometer_km = CASE WHEN odometer_km = CAST(:old AS integer)"
                " THEN :km ELSE greatest(odometer_km, :km) END WHERE id = :v"
            ),
            {"km": odometer_km, "old": before, "v": block.vehicle_id},
        )
    said = "; ".join(
        p for p in (f"odometer {odometer_km} km" if odometer_km is not None else "", notes) if p
    )
    current = get_status(conn, vehicle_id=block.vehicle_id)
    return change_status(
        conn,
        vehicle_id=block.vehicle_id,
        new_status=current.status,
        changed_by=amended_by,
        reason=_one_line(f"return of rental #{block.id} {why}" + (f": {said}" if said else "")),
        metadata={
            "block_id": block.id,
            "amends_return": True,
            "odometer_km": odometer_km,
            "previous_odometer_km": before,
            "notes": notes,
        },
        allow_same=True,
        enforce_transitions=False,
    )


def _one_line(reason: str, limit: int = 200) -> str:
    """Fit a reason into the audit log's one line; the whole text goes into its metadata."""
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def returns_report(
    conn: Connection,
    *,
    since: datetime,
    until: datetime | None = None,
    location_id: int | None = None,
) -> list[ReturnRecord]:
    """Return scheduled vs actual return for every rental due in [since, until)."""
    rows = conn.execute(
        text(
            "SELECT b.id AS block_id, v.plate, cu.name AS customer_name,"
            " b.scheduled_end AS scheduled_return, b.finished_at AS actual_return, b.state,"
            " CASE WHEN coalesce(b.finished_at, now()) > b.scheduled_end"
            "      THEN coalesce(b.finished_at, now()) - b.scheduled_end END AS late_by,"
            " CASE WHEN b.finished_at IS NOT NULL THEN b.finished_at <= b.scheduled_end END"
            "   AS on_time"
            " FROM blocks b JOIN vehicles v ON v.id = b.vehicle_id"
            " JOIN customers cu ON cu.id = b.customer_id"
            " WHERE b.kind = 'rental' AND b.state IN ('active', 'completed')"
            " AND b.scheduled_end >= :since AND b.scheduled_end < coalesce(:until, 'infinity')"
            " AND (CAST(:loc AS bigint) IS NULL OR b.end_location_id = :loc)"
            " ORDER BY b.scheduled_end"
        ),
        {"since": since, "until": until, "loc": location_id},
    ).mappings()
    return [ReturnRecord.model_validate(dict(r)) for r in rows]
