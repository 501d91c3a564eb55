"""Time blocks: the periods a vehicle is spoken for, guarded by the no-overlap constraint."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from psycopg import errors as pg_errors
from pydantic import BaseModel
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from db.errors import BookingConflict, InvalidInput, NotAvailable, NotFound
from db.events import emit
from db.timeutil import local_iso, require_period

T = TypeVar("T")

KINDS = ("hold", "reservation", "rental", "maintenance", "transfer")
# Kinds after which the car needs cleaning/prep before the next customer.
BUFFERED_KINDS = frozenset({"hold", "reservation", "rental"})
# A block in these states occupies its period; the others are history only.
LIVE_STATES = ("active", "completed")


class Block(BaseModel):
    """One period a vehicle is spoken for."""

    id: int
    vehicle_id: int
    plate: str
    kind: str
    state: str
    start: datetime
    end: datetime
    blocked_until: datetime
    scheduled_end: datetime
    start_location_id: int
    end_location_id: int
    customer_id: int | None
    customer_name: str | None
    reference: str | None
    expires_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    created_by: int
    created_at: datetime
    time_zone: str

    def describe(self) -> str:
        """Name the block the way a clerk would say it, in the pickup lot's local time."""
        who = f" for {self.customer_name}" if self.customer_name else ""
        ref = f" {self.reference}" if self.reference else ""
        return (
            f"{self.kind} #{self.id}{ref}{who} on {self.plate},"
            f" {local_iso(self.start, self.time_zone)} to {local_iso(self.end, self.time_zone)}"
        )


_BLOCK_SQL = """
SELECT b.id, b.vehicle_id, v.plate, b.kind, b.state, lower(b.period) AS start,
       upper(b.period) AS "end", upper(b.blocked) AS blocked_until, b.scheduled_end,
       b.start_location_id, b.end_location_id, b.customer_id, cu.name AS customer_name,
       b.reference, b.expires_at, b.started_at, b.finished_at, b.created_by, b.created_at,
       sl.time_zone
FROM blocks b
JOIN vehicles v ON v.id = b.vehicle_id
JOIN locations sl ON sl.id = b.start_location_id
LEFT JOIN customers cu ON cu.id = b.customer_id
"""

# A hold whose time ran out counts for nothing, even before anyone marks it expired.
LIVE_BLOCK = (
    "b.state IN ('active', 'completed')"
    " AND NOT (b.kind = 'hold' AND b.expires_at <= clock_timestamp())"
)


def get_block(conn: Connection, *, block_id: int, for_update: bool = False) -> Block:
    """Return one block, optionally locked for a change."""
    sql = _BLOCK_SQL + " WHERE b.id = :id"
    if for_update:
        sql += " FOR UPDATE OF b"
    row = conn.execute(text(sql), {"id": block_id}).mappings().first()
    if row is None:
        raise NotFound(f"unknown block {block_id}", field="block_id")
    return Block.model_validate(dict(row))


def vehicle_blocks(
    conn: Connection,
    *,
    vehicle_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
    live_only: bool = True,
) -> list[Block]:
    """Return a vehicle's blocks overlapping [since, until), in time order."""
    sql = _BLOCK_SQL + " WHERE b.vehicle_id = :v"
    if live_only:
        sql += " AND " + LIVE_BLOCK
    sql += (
        " AND b.blocked && tstzrange(coalesce(CAST(:since AS timestamptz), '-infinity'),"
        " coalesce(CAST(:until AS timestamptz), 'infinity'))"
        " ORDER BY lower(b.period)"
    )
    rows = conn.execute(text(sql), {"v": vehicle_id, "since": since, "until": until}).mappings()
    return [Block.model_validate(dict(r)) for r in rows]


def find_blocking(
    conn: Connection,
    *,
    vehicle_id: int,
    start: datetime,
    end: datetime,
    buffer: timedelta = timedelta(0),
    exclude_id: int | None = None,
) -> list[Block]:
    """Return the live blocks that a new period [start, end + buffer) would collide with."""
    rows = conn.execute(
        text(
            _BLOCK_SQL + " WHERE b.vehicle_id = :v AND " + LIVE_BLOCK + " AND b.blocked &&"
            " tstzrange(:start, CAST(:end AS timestamptz) + CAST(:buffer AS interval))"
            " AND b.id IS DISTINCT FROM :exclude ORDER BY lower(b.period)"
        ),
        {"v": vehicle_id, "start": start, "end": end, "buffer": buffer, "exclude": exclude_id},
    ).mappings()
    return [Block.model_validate(dict(r)) for r in rows]


def clear_expired_holds(conn: Connection, *, vehicle_id: int) -> int:
    """Mark the vehicle's run-out holds expired so they stop occupying the constraint."""
    result = conn.execute(
        text(
            "UPDATE blocks SET state = 'expired', updated_at = clock_timestamp()"
            " WHERE vehicle_id = :v AND kind = 'hold' AND state = 'active'"
            " AND expires_at <= clock_timestamp()"
        ),
        {"v": vehicle_id},
    )
    return result.rowcount


def buffer_for(conn: Connection, *, vehicle_id: int, kind: str) -> timedelta:
    """Return the prep buffer that follows a block of this kind on this vehicle."""
    if kind not in BUFFERED_KINDS:
        return timedelta(0)
    return conn.execute(
        text(
            "SELECT c.prep_buffer FROM vehicles v JOIN vehicle_categories c"
            " ON c.id = v.category_id WHERE v.id = :v"
        ),
        {"v": vehicle_id},
    ).scalar_one()


def _conflict(blocking: list[Block]) -> BookingConflict:
    names = "; ".join(b.describe() for b in blocking) or "a booking committed at the same moment"
    return BookingConflict(
        f"vehicle is already spoken for: {names}",
        hint="pick another vehicle or period (search shows what is free)",
        details={"blocking": [b.model_dump(mode="json") for b in blocking]},
    )


def _is_exclusion(exc: IntegrityError) -> bool:
    return isinstance(exc.orig, pg_errors.ExclusionViolation)


# A hold can run out between clearing the run-out holds and the constraint check: the
# constraint still counts its row, while every read already hides it. So after a collision the
# run-out holds are cleared again and, when no live block is left to name, the write is tried
# again: a car free by the time the constraint fires is booked, and a refusal names a blocker.
_ATTEMPTS = 3


def _claim(
    conn: Connection,
    write: Callable[[], T],
    *,
    vehicle_id: int,
    start: datetime,
    end: datetime,
    buffer: timedelta,
    exclude_id: int | None = None,
) -> T:
    blocking: list[Block] = []
    for _ in range(_ATTEMPTS):
        try:
            with conn.begin_nested():
                return write()
        except IntegrityError as exc:
            if not _is_exclusion(exc):
                raise
        clear_expired_holds(conn, vehicle_id=vehicle_id)
        blocking = find_blocking(
            conn, vehicle_id=vehicle_id, start=start, end=end, buffer=buffer, exclude_id=exclude_id
        )
        if blocking:
            break
    raise _conflict(blocking)


def insert_block(
    conn: Connection,
    *,
    vehicle_id: int,
    kind: str,
    start: datetime,
    end: datetime,
    start_location_id: int,
    end_location_id: int,
    created_by: int,
    customer_id: int | None = None,
    reference: str | None = None,
    expires_at: datetime | None = None,
    notes: str = "",
    event_payload: dict[str, Any] | None = None,
) -> Block:
    """Claim [start, end) plus prep buffer on a vehicle; raise BookingConflict naming blockers."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown block kind {kind!r}", field="kind", hint=", ".join(KINDS))
    require_period(start, end)
    active = conn.execute(
        text("SELECT active FROM vehicles WHERE id = :v"), {"v": vehicle_id}
    ).scalar()
    if active is None:
        raise NotFound(f"unknown vehicle id {vehicle_id}", field="vehicle_id")
    if not active:
        raise NotAvailable("vehicle is retired from the fleet", field="vehicle_id")
    clear_expired_holds(conn, vehicle_id=vehicle_id)
    buffer = buffer_for(conn, vehicle_id=vehicle_id, kind=kind)
    params = {
        "v": vehicle_id,
        "kind": kind,
        "start": start,
        "end": end,
        "buffer": buffer,
        "sloc": start_location_id,
        "eloc": end_location_id,
        "customer": customer_id,
        "reference": reference,
        "expires": expires_at,
        "by": created_by,
        "notes": notes,
    }
    insert = text(
        "INSERT INTO blocks (vehicle_id, kind, period, blocked, scheduled_end,"
        " start_location_id, end_location_id, customer_id, reference, expires_at,"
        " created_by, notes)"
        " VALUES (:v, :kind, tstzrange(:start, :end),"
        " tstzrange(:start, CAST(:end AS timestamptz) + CAST(:buffer AS interval)),"
        " :end, :sloc, :eloc, :customer, :reference, :expires, :by, :notes)"
        " RETURNING id"
    )
    block_id = _claim(
        conn,
        lambda: conn.execute(insert, params).scalar_one(),
        vehicle_id=vehicle_id,
        start=start,
        end=end,
        buffer=buffer,
    )
    block = get_block(conn, block_id=block_id)
    emit(
        conn,
        kind=f"{kind}_created",
        vehicle_id=vehicle_id,
        location_id=start_location_id,
        actor_id=created_by,
        payload={**block.model_dump(mode="json"), **(event_payload or {})},
    )
    return block


def move_block(
    conn: Connection,
    *,
    block_id: int,
    start: datetime,
    end: datetime,
    changed_by: int,
    event_kind: str = "block_moved",
    scheduled: bool = True,
) -> Block:
    """Move or resize a block; on collision raise BookingConflict naming the blockers."""
    require_period(start, end)
    block = get_block(conn, block_id=block_id, for_update=True)
    if block.state not in LIVE_STATES:
        raise InvalidInput(
            f"{block.kind} #{block.id} is {block.state} and can no longer change", field="block_id"
        )
    clear_expired_holds(conn, vehicle_id=block.vehicle_id)
    buffer = buffer_for(conn, vehicle_id=block.vehicle_id, kind=block.kind)
    update = text(
        "UPDATE blocks SET period = tstzrange(:start, :end),"
        " blocked = tstzrange(:start, CAST(:end AS timestamptz) + CAST(:buffer AS interval)),"
        " scheduled_end = CASE WHEN :scheduled THEN :end ELSE scheduled_end END,"
        " updated_at = clock_timestamp() WHERE id = :id"
    )
    values = {"id": block_id, "start": start, "end": end, "buffer": buffer, "scheduled": scheduled}
    _claim(
        conn,
        lambda: conn.execute(update, values),
        vehicle_id=block.vehicle_id,
        start=start,
        end=end,
        buffer=buffer,
        exclude_id=block_id,
    )
    moved = get_block(conn, block_id=block_id)
    emit(
        conn,
        kind=event_kind,
        vehicle_id=block.vehicle_id,
        location_id=block.start_location_id,
        actor_id=changed_by,
        payload={
            **moved.model_dump(mode="json"),
            "previous_start": block.start,
            "previous_end": block.end,
        },
    )
    return moved


def end_block(
    conn: Connection,
    *,
    block_id: int,
    state: str,
    changed_by: int,
    reason: str,
    at: datetime | None = None,
    end_location_id: int | None = None,
    event_kind: str | None = None,
    event_payload: dict[str, Any] | None = None,
) -> Block:
    """Close a block: cancel it (frees the period) or complete it at `at` (frees what remains).

    A completed block keeps the part already used plus its prep buffer, cut short where the
    next block begins, so a late return never makes the constraint reject the return itself.
    """
    if state not in ("completed", "cancelled", "expired", "converted"):
        raise InvalidInput(f"cannot end a block as {state!r}", field="state")
    block = get_block(conn, block_id=block_id, for_update=True)
    if block.state not in ("active",):
        raise InvalidInput(
            f"{block.kind} #{block.id} is already {block.state}",
            field="block_id",
            hint="only active blocks can be ended",
        )
    if state == "completed":
        at = at or conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        if at <= block.start:
            raise InvalidInput(
                f"{block.kind} #{block.id} cannot finish before it started ({block.start})",
                field="at",
            )
        buffer = buffer_for(conn, vehicle_id=block.vehicle_id, kind=block.kind)
        conn.execute(
            text(
                "WITH nxt AS (SELECT min(lower(blocked)) AS starts FROM blocks b"
                " WHERE b.vehicle_id = :v AND b.id <> :id AND " + LIVE_BLOCK + " AND"
                " lower(b.blocked) > :start)"
                " UPDATE blocks SET state = 'completed', finished_at = :at,"
                " end_location_id = coalesce(:eloc, end_location_id),"
                " period = tstzrange(lower(period),"
                "   greatest(lower(period) + interval '1 second',"
                "            least(CAST(:at AS timestamptz), coalesce(nxt.starts, 'infinity')))),"
                " blocked = tstzrange(lower(period),"
                "   greatest(lower(period) + interval '1 second',"
                "            least(CAST(:at AS timestamptz) + CAST(:buffer AS interval),"
                "                  coalesce(nxt.starts, 'infinity')))),"
                " updated_at = clock_timestamp()"
                " FROM nxt WHERE id = :id"
            ),
            {
                "v": block.vehicle_id,
                "id": block_id,
                "start": block.start,
                "at": at,
                "eloc": end_location_id,
                "buffer": buffer,
            },
        )
    else:
        conn.execute(
            text("UPDATE blocks SET state = :state, updated_at = clock_timestamp() WHERE id = :id"),
            {"state": state, "id": block_id},
        )
    ended = get_block(conn, block_id=block_id)
    emit(
        conn,
        kind=event_kind or f"{block.kind}_{state}",
        vehicle_id=block.vehicle_id,
        location_id=ended.end_location_id,
        actor_id=changed_by,
        payload={**ended.model_dump(mode="json"), "reason": reason, **(event_payload or {})},
    )
    return ended


def mark_started(
    conn: Connection, *, block_id: int, changed_by: int, at: datetime | None = None
) -> datetime:
    """Record when a block actually began (pickup, departure, start of work); return it.

    Starting before the booked start moves the block's start back to it, so the period covers
    the time the car was really out (and a return before the booked start can be recorded);
    if another booking holds the car then, BookingConflict names it.
    """
    at = at or conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    block = get_block(conn, block_id=block_id, for_update=True)
    if at < block.start:
        move_block(
            conn,
            block_id=block_id,
            start=at,
            end=block.end,
            changed_by=changed_by,
            event_kind="block_started_early",
            scheduled=False,
        )
    conn.execute(
        text("UPDATE blocks SET started_at = :at, updated_at = clock_timestamp() WHERE id = :id"),
        {"at": at, "id": block_id},
    )
    return at


def location_at(conn: Connection, *, vehicle_id: int, at: datetime) -> int | None:
    """Return where the vehicle will be at `at`: where its last move ending by then ends.

    Only moves (one-way bookings, transfers) change lots. Moves that ended before now are
    already reflected in the live status, which also knows about moves staff made by hand,
    so without a move in between the live location holds.
    """
    return conn.execute(
        text(
            "SELECT coalesce((SELECT b.end_location_id FROM blocks b"
            "   WHERE b.vehicle_id = s.vehicle_id AND b.moves"
            "   AND b.state IN ('active', 'completed')"
            "   AND upper(b.period) > now() AND upper(b.period) <= :at"
            "   ORDER BY upper(b.period) DESC LIMIT 1), s.location_id)"
            " FROM vehicle_status_realtime s WHERE s.vehicle_id = :v"
        ),
        {"v": vehicle_id, "at": at},
    ).scalar()
