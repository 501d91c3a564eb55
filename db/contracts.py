"""Rental contracts from the contract feed: newest version wins, effects through the engine.

A feed file is staged with COPY, then one set-based upsert keeps the newest version of each
contract (an older or repeated version changes nothing). The effect of each changed contract
on the fleet is applied in two ways that end the same: brand-new future contracts that touch
nothing else are inserted as reservations in one statement (with their events, like a
reservation made at the desk, and still guarded by the exclusion constraint); everything
else (moves, extensions, cancellations, cars already out, collisions) goes contract by
contract through the same engine functions staff use.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from db import conflicts, rentals
from db.blocks import get_block, insert_block, move_block
from db.errors import BookingConflict, FleetError
from db.events import CHANNEL
from db.fleet import feed_user_id

STAGE_COLUMNS = (
    "line",
    "external_id",
    "version",
    "updated_at",
    "event",
    "plate",
    "customer_name",
    "customer_phone",
    "customer_email",
    "pickup_location",
    "return_location",
    "pickup_at",
    "return_at",
)
BOOKING_EVENTS = ("created", "modified", "extended")
COPY_CHUNK = 200_000

Progress = Callable[[int, int], None]


@dataclass
class ApplySummary:
    """What the changed contracts did to the fleet."""

    reserved: int = 0
    rented: int = 0
    moved: int = 0
    cancelled: int = 0
    closed: int = 0
    unchanged: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)


def stage(conn: Connection, rows: pl.DataFrame, *, progress: Progress | None = None) -> int:
    """COPY parsed contract rows into a transaction-local staging table; return the row count."""
    conn.execute(
        text(
            "CREATE TEMP TABLE IF NOT EXISTS contract_stage ("
            " line integer, external_id text, version bigint, updated_at timestamptz,"
            " event text, plate text, customer_name text, customer_phone text,"
            " customer_email text, pickup_location text, return_location text,"
            " pickup_at timestamptz, return_at timestamptz, customer_id bigint) ON COMMIT DROP"
        )
    )
    conn.execute(text("TRUNCATE contract_stage"))
    total = rows.height
    cursor = conn.connection.driver_connection.cursor()
    columns = ", ".join(STAGE_COLUMNS)
    done = 0
    # Chunks keep the CSV buffer small however big the file is.
    for offset in range(0, total, COPY_CHUNK):
        chunk = rows.slice(offset, COPY_CHUNK).select(STAGE_COLUMNS)
        buffer = io.BytesIO()
        chunk.write_csv(buffer, include_header=False, datetime_format="%Y-%m-%dT%H:%M:%S%.f%z")
        with cursor.copy(f"COPY contract_stage ({columns}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(buffer.getvalue())
        done += chunk.height
        if progress:
            progress(done, total)
    conn.execute(text("ANALYZE contract_stage"))
    return total


@dataclass
class Upserted:
    """What the newest-version upsert of a staged file did."""

    changed: int
    stale: int
    reserved: int


_NEWEST = text(
    "DROP TABLE IF EXISTS contract_newest;"
    " CREATE TEMP TABLE contract_newest ON COMMIT DROP AS"
    " SELECT DISTINCT ON (s.external_id) s.*, v.id AS vehicle_id,"
    "   pl.id AS pickup_location_id, rl.id AS return_location_id, k.id IS NULL AS is_new,"
    "   CAST(NULL AS bigint) AS block_id"
    " FROM contract_stage s"
    " JOIN vehicles v ON v.plate = s.plate"
    " JOIN locations pl ON pl.code = s.pickup_location"
    " JOIN locations rl ON rl.code = s.return_location"
    " LEFT JOIN contracts k ON k.external_id = s.external_id"
    " WHERE k.id IS NULL OR k.version < s.version"
    " ORDER BY s.external_id, s.version DESC, s.updated_at DESC, s.line DESC;"
    " ANALYZE contract_newest"
)
_UPSERT = text(
    "INSERT INTO contracts AS c (external_id, version, updated_at, event, vehicle_id,"
    "  customer_id, customer_name, customer_phone, customer_email, pickup_location_id,"
    "  return_location_id, pickup_at, return_at, file_id, line, block_id, applied_version,"
    "  outcome)"
    " SELECT external_id, version, updated_at, event, vehicle_id, customer_id,"
    "  customer_name, customer_phone, customer_email, pickup_location_id,"
    "  return_location_id, pickup_at, return_at, :file_id, line, block_id,"
    "  CASE WHEN block_id IS NULL THEN 0 ELSE version END,"
    "  CASE WHEN block_id IS NULL THEN NULL ELSE 'reserved' END"
    " FROM contract_newest"
    " ON CONFLICT (external_id) DO UPDATE SET version = EXCLUDED.version,"
    "  updated_at = EXCLUDED.updated_at, event = EXCLUDED.event,"
    "  vehicle_id = EXCLUDED.vehicle_id, customer_id = EXCLUDED.customer_id,"
    "  customer_name = EXCLUDED.customer_name,"
    "  customer_phone = EXCLUDED.customer_phone, customer_email = EXCLUDED.customer_email,"
    "  pickup_location_id = EXCLUDED.pickup_location_id,"
    "  return_location_id = EXCLUDED.return_location_id, pickup_at = EXCLUDED.pickup_at,"
    "  return_at = EXCLUDED.return_at, file_id = EXCLUDED.file_id, line = EXCLUDED.line,"
    "  received_at = now()"
    " WHERE c.version < EXCLUDED.version"
)


def upsert_staged(conn: Connection, *, file_id: int, now: datetime | None = None) -> Upserted:
    """Keep the newest version of each staged contract; reserve brand-new ones in bulk.

    Within the file the highest version (then the latest update, then the last line) wins;
    against the table only a strictly higher version replaces what is there, so replays and
    late deliveries of older versions are no-ops. Brand-new future contracts that collide
    with nothing are reserved before the contracts are written, so each contract row is
    written once, with its customer and block: an update of a row inserted in the same
    transaction re-checks every foreign key of the row.
    """
    clock = now or conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    conn.execute(_STAGE_NEW_CUSTOMERS)
    conn.execute(_STAGE_LINK_CUSTOMERS)
    conn.execute(_NEWEST)
    reserved = _bulk_reserve(conn, now=clock, by=feed_user_id(conn, "contracts"))
    changed = conn.execute(_UPSERT, {"file_id": file_id}).rowcount
    staged = conn.execute(text("SELECT count(*) FROM contract_stage")).scalar_one()
    return Upserted(changed=changed, stale=staged - changed, reserved=reserved)


# A customer is known by e-mail, else by name and phone: one key, so each step is a hash join.
_STAGE_NEW_CUSTOMERS = text(
    "INSERT INTO customers (name, phone, email)"
    " SELECT DISTINCT ON (k) name, phone, email FROM ("
    "  SELECT coalesce(lower(s.customer_email), s.customer_name || '|'"
    "      || coalesce(s.customer_phone, '')) AS k, s.customer_name AS name,"
    "    s.customer_phone AS phone, s.customer_email AS email, s.version"
    "  FROM contract_stage s) x"
    " WHERE NOT EXISTS (SELECT 1 FROM customers cu WHERE coalesce(lower(cu.email), cu.name"
    "   || '|' || coalesce(cu.phone, '')) = x.k)"
    " ORDER BY k, version DESC"
)
_STAGE_LINK_CUSTOMERS = text(
    "UPDATE contract_stage s SET customer_id = m.id FROM ("
    "  SELECT DISTINCT ON (k) coalesce(lower(cu.email), cu.name || '|' || coalesce(cu.phone, ''))"
    "    AS k, cu.id FROM customers cu ORDER BY k, cu.id) m"
    " WHERE coalesce(lower(s.customer_email), s.customer_name || '|'"
    "   || coalesce(s.customer_phone, '')) = m.k"
)
_BULK_RESERVE = text(
    "WITH cand AS ("
    "  SELECT n.line AS id, n.external_id, n.version, n.vehicle_id, n.customer_id,"
    "    n.pickup_location_id, n.return_location_id, n.pickup_at, n.return_at,"
    "    tstzrange(n.pickup_at, n.return_at + cat.prep_buffer) AS blocked"
    "  FROM contract_newest n JOIN vehicles v ON v.id = n.vehicle_id AND v.active"
    "  JOIN vehicle_categories cat ON cat.id = v.category_id"
    "  WHERE n.is_new AND n.event IN ('created', 'modified', 'extended')"
    "    AND n.pickup_at > :now AND n.customer_id IS NOT NULL),"
    " ordered AS ("
    "  SELECT cand.*, max(upper(blocked)) OVER (PARTITION BY vehicle_id ORDER BY"
    "    lower(blocked), id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end"
    "  FROM cand),"
    " clear AS ("
    "  SELECT o.* FROM ordered o"
    "  WHERE (o.prev_end IS NULL OR o.prev_end <= lower(o.blocked))"
    "    AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.vehicle_id = o.vehicle_id"
    "      AND b.state IN ('active', 'completed') AND b.blocked && o.blocked)),"
    " ins AS ("
    "  INSERT INTO blocks (vehicle_id, kind, period, blocked, scheduled_end,"
    "    start_location_id, end_location_id, customer_id, reference, created_by, notes)"
    "  SELECT vehicle_id, 'reservation', tstzrange(pickup_at, return_at), blocked,"
    "    return_at, pickup_location_id, return_location_id, customer_id, external_id, :by,"
    "    'contract ' || external_id || ' version ' || version"
    "  FROM clear RETURNING *),"
    # The contract's external id is the block's reference.
    " linked AS ("
    "  UPDATE contract_newest n SET block_id = ins.id"
    "  FROM ins WHERE n.external_id = ins.reference RETURNING n.external_id)"
    " INSERT INTO availability_events (kind, vehicle_id, location_id, actor_id, payload)"
    " SELECT 'reservation_created', ins.vehicle_id, ins.start_location_id, :by,"
    "   jsonb_build_object('id', ins.id, 'vehicle_id', ins.vehicle_id, 'plate', v.plate,"
    "     'kind', ins.kind, 'state', ins.state, 'start', lower(ins.period),"
    "     'end', upper(ins.period), 'blocked_until', upper(ins.blocked),"
    "     'scheduled_end', ins.scheduled_end, 'start_location_id', ins.start_location_id,"
    "     'end_location_id', ins.end_location_id, 'customer_id', ins.customer_id,"
    "     'customer_name', cu.name, 'reference', ins.reference, 'expires_at', NULL,"
    "     'started_at', NULL, 'finished_at', NULL, 'created_by', ins.created_by,"
    "     'created_at', ins.created_at, 'time_zone', l.time_zone, 'source', 'feed')"
    " FROM ins JOIN vehicles v ON v.id = ins.vehicle_id"
    " JOIN locations l ON l.id = ins.start_location_id"
    " LEFT JOIN customers cu ON cu.id = ins.customer_id"
)


def _bulk_reserve(conn: Connection, *, now: datetime, by: int) -> int:
    """Insert new future contracts that collide with nothing as reservations, in one go.

    Candidates that overlap a live block, or an earlier candidate on the same car, are left
    for the one-by-one path, which reports the collision. The exclusion constraint still
    guards the insert: a booking committed meanwhile makes the statement fail, and then
    everything goes the one-by-one way.
    """
    try:
        with conn.begin_nested():
            inserted = conn.execute(_BULK_RESERVE, {"now": now, "by": by}).rowcount
    except IntegrityError:
        return 0
    if inserted:
        # NOTIFY only says "look now": one for the whole batch is enough.
        conn.execute(text("SELECT pg_notify(:channel, 'batch')"), {"channel": CHANNEL})
    return inserted


def apply_pending(
    conn: Connection,
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
    limit: int | None = None,
) -> ApplySummary:
    """Bring the fleet in line with every contract whose newest version is not applied yet."""
    clock = now or conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    by = feed_user_id(conn, "contracts")
    summary = ApplySummary()
    pending = conn.execute(
        text(
            "SELECT c.*, cat.id AS category_id FROM contracts c"
            " JOIN vehicles v ON v.id = c.vehicle_id"
            " JOIN vehicle_categories cat ON cat.id = v.category_id"
            " WHERE c.applied_version < c.version ORDER BY c.pickup_at, c.id LIMIT :limit"
        ),
        {"limit": limit},
    ).mappings()
    rows = list(pending)
    for i, row in enumerate(rows, start=1):
        outcome = _apply_one(conn, row, now=clock, by=by, summary=summary)
        conn.execute(
            text(
                "UPDATE contracts SET applied_version = version, outcome = :outcome"
                " WHERE id = :id AND version = :version"
            ),
            {"outcome": outcome[:200], "id": row["id"], "version": row["version"]},
        )
        if progress and (i % 100 == 0 or i == len(rows)):
            progress(i, len(rows))
    return summary


def _apply_one(conn: Connection, row: Any, *, now: datetime, by: int, summary: ApplySummary) -> str:
    """Apply one contract version through the engine; return the outcome to record."""
    try:
        with conn.begin_nested():
            outcome = _effect(conn, row, now=now, by=by, summary=summary)
            conflicts.clear_feed_collision(conn, external_id=row["external_id"])
            return outcome
    except BookingConflict as exc:
        summary.conflicts.append(_report_collision(conn, row, exc, now=now))
        return f"conflict: {exc.message}"
    except FleetError as exc:
        summary.refused.append(
            {
                "external_id": row["external_id"],
                "file_id": row["file_id"],
                "line": row["line"] or 1,
                "reason": exc.message,
                "raw": {
                    k: row[k] for k in ("external_id", "version", "event", "pickup_at", "return_at")
                },
            }
        )
        return f"refused: {exc.message}"


def _effect(conn: Connection, row: Any, *, now: datetime, by: int, summary: ApplySummary) -> str:
    event, block_id = row["event"], row["block_id"]
    block = get_block(conn, block_id=block_id) if block_id else None
    if block is None or block.state not in ("active",):
        if block is not None and event in BOOKING_EVENTS:
            summary.unchanged += 1
            return f"no effect: {block.kind} #{block.id} is already {block.state}"
        if event in ("cancelled", "closed"):
            summary.unchanged += 1
            return "recorded (nothing booked for it)"
        reference = row["external_id"]
        created = insert_block(
            conn,
            vehicle_id=row["vehicle_id"],
            kind="reservation",
            start=row["pickup_at"],
            end=row["return_at"],
            start_location_id=row["pickup_location_id"],
            end_location_id=row["return_location_id"],
            created_by=by,
            customer_id=row["customer_id"],
            reference=reference,
            notes=f"contract {reference} version {row['version']}",
            event_payload={"source": "feed"},
        )
        _link_block(conn, row["id"], created.id)
        if row["pickup_at"] <= now:
            # The rental system says the customer already has the car: hand it over here too.
            rentals.pick_up(conn, block_id=created.id, handed_over_by=by, at=row["pickup_at"])
            summary.rented += 1
            return "rented"
        summary.reserved += 1
        return "reserved"
    if event == "cancelled":
        if block.kind == "reservation":
            rentals.cancel_reservation(
                conn, block_id=block.id, cancelled_by=by, reason=f"contract {block.reference}"
            )
            summary.cancelled += 1
            return "cancelled"
        summary.unchanged += 1
        return f"no effect: a started {block.kind} ends with its return, not a cancellation"
    if event == "closed":
        if block.kind == "rental":
            rentals.return_vehicle(
                conn, block_id=block.id, received_by=by, at=min(row["updated_at"], now)
            )
        else:
            rentals.cancel_reservation(
                conn, block_id=block.id, cancelled_by=by, reason="contract closed unused"
            )
        summary.closed += 1
        return "closed"
    # modified / extended: move the block to the contract's period (a started rental keeps
    # its actual start; only its end can move).
    start = block.start if block.kind == "rental" else row["pickup_at"]
    if block.vehicle_id != row["vehicle_id"]:
        conflicts.swap_vehicle(
            conn, block_id=block.id, vehicle_id=row["vehicle_id"], changed_by=by, reason="feed"
        )
        block = get_block(conn, block_id=_current_block(conn, row["id"]))
    if (start, row["return_at"]) == (block.start, block.end):
        summary.unchanged += 1
        return "unchanged"
    if block.kind == "rental":
        rentals.extend_rental(conn, block_id=block.id, new_end=row["return_at"], extended_by=by)
    else:
        move_block(conn, block_id=block.id, start=start, end=row["return_at"], changed_by=by)
    summary.moved += 1
    return "moved"


def _link_block(conn: Connection, contract_id: int, block_id: int) -> None:
    conn.execute(
        text("UPDATE contracts SET block_id = :b WHERE id = :id"),
        {"b": block_id, "id": contract_id},
    )


def _current_block(conn: Connection, contract_id: int) -> int:
    return conn.execute(
        text("SELECT block_id FROM contracts WHERE id = :id"), {"id": contract_id}
    ).scalar_one()


def _report_collision(
    conn: Connection, row: Any, exc: BookingConflict, *, now: datetime
) -> dict[str, Any]:
    """Record a contract the fleet cannot honour as an open conflict, with ways out."""
    suggestions = conflicts.suggest(
        conn,
        start=row["pickup_at"],
        end=row["return_at"],
        location_id=row["pickup_location_id"],
        category_id=row["category_id"],
        now=now,
    )
    blocking = (exc.details or {}).get("blocking") or []
    in_the_way = blocking[0]["id"] if blocking else row["block_id"]
    report = {
        "external_id": row["external_id"],
        "version": row["version"],
        "vehicle_id": row["vehicle_id"],
        "pickup_at": row["pickup_at"],
        "return_at": row["return_at"],
        "reason": exc.message,
        "blocking_block_ids": [b["id"] for b in blocking],
        "suggestions": [s.model_dump(mode="json") for s in suggestions],
    }
    if in_the_way is not None:
        conflicts.record_feed_collision(
            conn,
            block_id=in_the_way,
            vehicle_id=row["vehicle_id"],
            location_id=row["pickup_location_id"],
            details=report,
        )
    return report
