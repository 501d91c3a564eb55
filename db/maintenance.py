"""Maintenance: service work that blocks a vehicle, synced from the maintenance system."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from db.blocks import Block, end_block, get_block, insert_block, location_at, mark_started
from db.errors import InvalidInput, NotAvailable
from db.status import change_status, get_status


def schedule_maintenance(
    conn: Connection,
    *,
    vehicle_id: int,
    start: datetime,
    end: datetime,
    created_by: int,
    reference: str | None = None,
    notes: str = "",
) -> Block:
    """Block a vehicle for service work; refused, naming the booking, if it collides."""
    where = location_at(conn, vehicle_id=vehicle_id, at=start)
    if where is None:
        raise NotAvailable("the vehicle is not on a lot at that time", field="start")
    return insert_block(
        conn,
        vehicle_id=vehicle_id,
        kind="maintenance",
        start=start,
        end=end,
        start_location_id=where,
        end_location_id=where,
        created_by=created_by,
        reference=reference,
        notes=notes,
    )


def start_maintenance(
    conn: Connection, *, block_id: int, changed_by: int, at: datetime | None = None
) -> Block:
    """Record that service work began: the vehicle goes to maintenance until the block's end."""
    block = _open_maintenance(conn, block_id)
    mark_started(conn, block_id=block_id, at=at, changed_by=changed_by)
    change_status(
        conn,
        vehicle_id=block.vehicle_id,
        new_status="maintenance",
        changed_by=changed_by,
        reason=f"maintenance #{block.id} started"
        + (f" ({block.reference})" if block.reference else ""),
        expected_available_at=block.end,
        location_id=block.start_location_id,
        metadata={"block_id": block.id},
    )
    return get_block(conn, block_id=block_id)


def complete_maintenance(
    conn: Connection, *, block_id: int, changed_by: int, at: datetime | None = None
) -> Block:
    """Record that service work finished: the rest of the block is freed, the car is available."""
    block = _open_maintenance(conn, block_id)
    ended = end_block(
        conn, block_id=block_id, state="completed", changed_by=changed_by, reason="done", at=at
    )
    if get_status(conn, vehicle_id=block.vehicle_id).status == "maintenance":
        change_status(
            conn,
            vehicle_id=block.vehicle_id,
            new_status="available",
            changed_by=changed_by,
            reason=f"maintenance #{block.id} completed",
            metadata={"block_id": block.id},
        )
    return ended


def cancel_maintenance(conn: Connection, *, block_id: int, changed_by: int) -> Block:
    """Cancel service work that has not started."""
    block = _open_maintenance(conn, block_id)
    if block.started_at is not None:
        raise InvalidInput(f"maintenance #{block_id} already started", hint="complete it instead")
    return end_block(
        conn, block_id=block_id, state="cancelled", changed_by=changed_by, reason="cancelled"
    )


def _open_maintenance(conn: Connection, block_id: int) -> Block:
    block = get_block(conn, block_id=block_id, for_update=True)
    if block.kind != "maintenance" or block.state != "active":
        raise InvalidInput(
            f"block #{block_id} is a {block.state} {block.kind}, not open maintenance",
            field="block_id",
        )
    return block
