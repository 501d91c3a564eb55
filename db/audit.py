"""Audit trail: who changed what and when, 90 days of history, and audited rollback."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, text

from db.errors import InvalidInput, NotFound, RollbackRefused
from db.status import StatusChange, change_status

HISTORY_WINDOW = timedelta(days=90)


class LogEntry(BaseModel):
    """One status change as the audit trail shows it."""

    id: int
    vehicle_id: int
    plate: str
    old_status: str | None
    new_status: str
    old_location_code: str | None
    new_location_code: str | None
    version: int
    changed_by: int
    changed_by_name: str
    change_reason: str
    source: str
    metadata: dict[str, Any]
    reverts_log_id: int | None
    reverted_by_log_id: int | None
    changed_at: datetime


_LOG_SQL = """
SELECT g.id, g.vehicle_id, v.plate, g.old_status, g.new_status, lo.code AS old_location_code,
       ln.code AS new_location_code, g.version, g.changed_by, u.full_name AS changed_by_name,
       g.change_reason, g.source, g.metadata, g.reverts_log_id, r.id AS reverted_by_log_id,
       g.changed_at
FROM vehicle_status_log g
JOIN vehicles v ON v.id = g.vehicle_id
JOIN users u ON u.id = g.changed_by
LEFT JOIN locations lo ON lo.id = g.old_location_id
LEFT JOIN locations ln ON ln.id = g.new_location_id
LEFT JOIN vehicle_status_log r ON r.reverts_log_id = g.id
"""


def history(
    conn: Connection,
    *,
    vehicle_id: int | None = None,
    user_id: int | None = None,
    location_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 500,
) -> list[LogEntry]:
    """Return status changes, newest first, for a vehicle, a user or a location.

    Without `since` the last 90 days are returned, the span the story keeps online.
    """
    if not 1 <= limit <= 10_000:
        raise InvalidInput("limit must be between 1 and 10000", field="limit")
    rows = conn.execute(
        text(
            _LOG_SQL + " WHERE (CAST(:v AS bigint) IS NULL OR g.vehicle_id = :v)"
            " AND (CAST(:u AS bigint) IS NULL OR g.changed_by = :u)"
            " AND (CAST(:loc AS bigint) IS NULL OR :loc IN (g.old_location_id, g.new_location_id))"
            " AND g.changed_at >= coalesce(CAST(:since AS timestamptz),"
            " now() - CAST(:window AS interval))"
            " AND g.changed_at < coalesce(CAST(:until AS timestamptz), 'infinity')"
            " ORDER BY g.changed_at DESC, g.id DESC LIMIT :limit"
        ),
        {
            "v": vehicle_id,
            "u": user_id,
            "loc": location_id,
            "since": since,
            "until": until,
            "window": HISTORY_WINDOW,
            "limit": limit,
        },
    ).mappings()
    return [LogEntry.model_validate(dict(r)) for r in rows]


class ChangeEvent(BaseModel):
    """One availability change from the events outbox: bookings, holds, transfers, status."""

    id: int
    kind: str
    vehicle_id: int | None
    plate: str | None
    actor_id: int | None
    actor_name: str | None
    payload: dict[str, Any]
    created_at: datetime


def availability_changes(
    conn: Connection,
    *,
    vehicle_id: int | None = None,
    user_id: int | None = None,
    since: datetime | None = None,
    limit: int = 500,
) -> list[ChangeEvent]:
    """Return every availability change (not only status) for a vehicle or user, newest first.

    Without `since` the last 90 days are returned.
    """
    if not 1 <= limit <= 10_000:
        raise InvalidInput("limit must be between 1 and 10000", field="limit")
    rows = conn.execute(
        text(
            "SELECT e.id, e.kind, e.vehicle_id, v.plate, e.actor_id, u.full_name AS actor_name,"
            " e.payload, e.created_at FROM availability_events e"
            " LEFT JOIN vehicles v ON v.id = e.vehicle_id"
            " LEFT JOIN users u ON u.id = e.actor_id"
            " WHERE (CAST(:v AS bigint) IS NULL OR e.vehicle_id = :v)"
            " AND (CAST(:u AS bigint) IS NULL OR e.actor_id = :u)"
            " AND e.created_at >= coalesce(CAST(:since AS timestamptz),"
            " now() - CAST(:window AS interval))"
            " ORDER BY e.id DESC LIMIT :limit"
        ),
        {"v": vehicle_id, "u": user_id, "since": since, "window": HISTORY_WINDOW, "limit": limit},
    ).mappings()
    return [ChangeEvent.model_validate(dict(r)) for r in rows]


def get_entry(conn: Connection, *, log_id: int) -> LogEntry:
    """Return one audit entry, or raise NotFound."""
    row = conn.execute(text(_LOG_SQL + " WHERE g.id = :id"), {"id": log_id}).mappings().first()
    if row is None:
        raise NotFound(f"no status change #{log_id}", field="log_id")
    return LogEntry.model_validate(dict(row))


def rollback_change(
    conn: Connection, *, log_id: int, rolled_back_by: int, reason: str
) -> StatusChange:
    """Undo an incorrect status change by restoring the state before it, as a new change.

    History is never deleted: the restoring change is logged, linked to the one it reverts.
    Refused when later changes to the vehicle would be undone silently, or already reverted.
    """
    row = conn.execute(
        text(
            "SELECT g.vehicle_id, g.old_state, g.version, g.new_status,"
            " (SELECT r.id FROM vehicle_status_log r WHERE r.reverts_log_id = g.id) AS reverted_by"
            " FROM vehicle_status_log g WHERE g.id = :id"
        ),
        {"id": log_id},
    ).first()
    if row is None:
        raise NotFound(f"no status change #{log_id}", field="log_id")
    if row.reverted_by is not None:
        raise RollbackRefused(
            f"change #{log_id} was already rolled back by change #{row.reverted_by}",
            field="log_id",
        )
    if row.old_state is None:
        raise RollbackRefused(
            f"change #{log_id} registered the vehicle; there is no earlier state to restore",
            field="log_id",
        )
    # Lock the vehicle first so no change can slip in between the check and the restore.
    current = conn.execute(
        text("SELECT version FROM vehicle_status_realtime WHERE vehicle_id = :v FOR UPDATE"),
        {"v": row.vehicle_id},
    ).scalar_one()
    if current != row.version:
        newer = [
            LogEntry.model_validate(dict(r))
            for r in conn.execute(
                text(
                    _LOG_SQL + " WHERE g.vehicle_id = :v AND g.version > :ver"
                    " ORDER BY g.version DESC"
                ),
                {"v": row.vehicle_id, "ver": row.version},
            ).mappings()
        ]
        listed = "; ".join(
            f"#{e.id} {e.old_status}→{e.new_status} by {e.changed_by_name}" for e in newer
        )
        raise RollbackRefused(
            f"change #{log_id} is not the latest for this vehicle; rolling it back would"
            f" silently undo {len(newer)} later change(s): {listed}",
            field="log_id",
            hint="roll back the later changes first, newest first",
            details={"later_changes": [e.id for e in newer]},
        )
    old = row.old_state
    expected = old.get("expected_available_at")
    return change_status(
        conn,
        vehicle_id=row.vehicle_id,
        new_status=old["status"],
        changed_by=rolled_back_by,
        reason=f"rollback of #{log_id}: {reason}"[:200],
        expected_version=row.version,
        location_id=old.get("location_id"),
        destination_location_id=old.get("destination_location_id"),
        customer_id=old.get("customer_id"),
        block_id=old.get("block_id"),
        expected_available_at=datetime.fromisoformat(expected) if expected else None,
        metadata={"reverts": log_id, "reverted_status": row.new_status},
        reverts_log_id=log_id,
        enforce_transitions=False,
        allow_same=True,
    )
