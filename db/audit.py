"""Audit trail: who changed what and when, 90 days of history, and audited rollback."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, text

from db.errors import InvalidInput, NotFound, RollbackRefused
from db.lookup import plate_key
from db.status import StatusChange, change_status
from db.timeutil import require_aware

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

_COUNT_SQL = "SELECT count(*) FROM vehicle_status_log g JOIN vehicles v ON v.id = g.vehicle_id"


class LogFilter(BaseModel):
    """Which status changes to list: each field set narrows the log; none means all of it.

    `plate` is part of a plate as typed: look-alike characters (0/O, 1/I, 8/B...) are folded
    as the plate search does, so a misread plate still finds its history.
    Without `since` the last 90 days are meant, the span the story keeps online.
    """

    vehicle_id: int | None = None
    plate: str | None = None
    user_id: int | None = None
    location_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def _where(filters: LogFilter) -> tuple[str, dict[str, Any]]:
    """Return the WHERE clause for `filters` (fixed pieces only) and its bound values."""
    clauses = [
        "g.changed_at >= coalesce(CAST(:since AS timestamptz), now() - CAST(:window AS interval))"
    ]
    values: dict[str, Any] = {"since": filters.since, "window": HISTORY_WINDOW}
    for name in ("since", "until"):
        moment = getattr(filters, name)
        if moment is not None:
            require_aware(moment, name)
    if filters.until is not None:
        clauses.append("g.changed_at < :until")
        values["until"] = filters.until
    if filters.vehicle_id is not None:
        clauses.append("g.vehicle_id = :v")
        values["v"] = filters.vehicle_id
    if filters.plate:
        key = plate_key(filters.plate)
        if not key:
            raise InvalidInput(
                f"no letters or digits in the plate {filters.plate!r}",
                field="plate",
                hint="type part of the plate",
            )
        clauses.append("strpos(v.plate_key, :plate_key) > 0")
        values["plate_key"] = key
    if filters.user_id is not None:
        clauses.append("g.changed_by = :u")
        values["u"] = filters.user_id
    if filters.location_id is not None:
        # A change belongs to a lot if the car was there before it or is there after it.
        clauses.append(":loc IN (g.old_location_id, g.new_location_id)")
        values["loc"] = filters.location_id
    return " WHERE " + " AND ".join(clauses), values


def _require_limit(limit: int) -> None:
    if not 1 <= limit <= 10_000:
        raise InvalidInput("limit must be between 1 and 10000", field="limit")


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
    filters = LogFilter(
        vehicle_id=vehicle_id, user_id=user_id, location_id=location_id, since=since, until=until
    )
    return history_page(conn, filters=filters, limit=limit)


def history_page(
    conn: Connection, *, filters: LogFilter, offset: int = 0, limit: int = 50
) -> list[LogEntry]:
    """Return one page of the filtered log, newest first (`offset` entries skipped)."""
    _require_limit(limit)
    if offset < 0:
        raise InvalidInput("offset must not be negative", field="offset")
    where, values = _where(filters)
    rows = conn.execute(
        text(_LOG_SQL + where + " ORDER BY g.changed_at DESC, g.id DESC LIMIT :limit OFFSET :off"),
        {**values, "limit": limit, "off": offset},
    ).mappings()
    return [LogEntry.model_validate(dict(r)) for r in rows]


def count_history(conn: Connection, *, filters: LogFilter) -> int:
    """Return how many status changes match `filters` (for paging and export progress)."""
    where, values = _where(filters)
    return conn.execute(
        text(_COUNT_SQL + where),
        values,
    ).scalar_one()


def history_batch(
    conn: Connection,
    *,
    filters: LogFilter,
    older_than: tuple[datetime, int] | None = None,
    limit: int = 2_000,
) -> list[LogEntry]:
    """Return the next batch of the filtered log, newest first, after the cursor `older_than`.

    The cursor is the (changed_at, id) of the last entry of the previous batch. Unlike an
    offset, it stays put when new changes arrive at the top while an export is running, so
    a batched read neither repeats nor skips entries.
    """
    _require_limit(limit)
    where, values = _where(filters)
    if older_than is not None:
        where += " AND (g.changed_at, g.id) < (:at, :id)"
        values = {**values, "at": older_than[0], "id": older_than[1]}
    rows = conn.execute(
        text(_LOG_SQL + where + " ORDER BY g.changed_at DESC, g.id DESC LIMIT :limit"),
        {**values, "limit": limit},
    ).mappings()
    return [LogEntry.model_validate(dict(r)) for r in rows]


class StatusSpan(BaseModel):
    """A stretch of time a vehicle spent in one status, opened by one logged change."""

    log_id: int
    status: str
    started_at: datetime
    ended_at: datetime | None  # None: the vehicle is still in this status
    location_code: str | None
    time_zone: str | None
    changed_by_name: str
    change_reason: str
    reverts_log_id: int | None


def timeline(
    conn: Connection,
    *,
    vehicle_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[StatusSpan]:
    """Return a vehicle's statuses over a period as spans, oldest first.

    The span already running at `since` is included (the vehicle was in some status when
    the period began); spans are not clipped, so callers see when each one really began
    and ended. Without `since` the last 90 days are meant.
    """
    for name, moment in (("since", since), ("until", until)):
        if moment is not None:
            require_aware(moment, name)
    # Each span ends where the vehicle's next change begins; `lead` must see every later
    # change, so the period is applied only after the spans are formed.
    rows = conn.execute(
        text(
            "SELECT * FROM (SELECT g.id AS log_id, g.new_status AS status,"
            " g.changed_at AS started_at,"
            " lead(g.changed_at) OVER (ORDER BY g.version) AS ended_at,"
            " l.code AS location_code, l.time_zone, u.full_name AS changed_by_name,"
            " g.change_reason, g.reverts_log_id"
            " FROM vehicle_status_log g JOIN users u ON u.id = g.changed_by"
            " LEFT JOIN locations l ON l.id = g.new_location_id"
            " WHERE g.vehicle_id = :v) s"
            " WHERE coalesce(s.ended_at, 'infinity') > coalesce(CAST(:since AS timestamptz),"
            " now() - CAST(:window AS interval))"
            " AND s.started_at < coalesce(CAST(:until AS timestamptz), 'infinity')"
            " ORDER BY s.started_at, s.log_id"
        ),
        {"v": vehicle_id, "since": since, "until": until, "window": HISTORY_WINDOW},
    ).mappings()
    return [StatusSpan.model_validate(dict(r)) for r in rows]


class Author(BaseModel):
    """An account a status change can be attributed to: staff, a feed or the system."""

    id: int
    username: str
    full_name: str
    role: str


def authors(conn: Connection) -> list[Author]:
    """Return every account that can appear in the log as its author, by name."""
    rows = conn.execute(
        text("SELECT id, username, full_name, role FROM users ORDER BY full_name, id")
    ).mappings()
    return [Author.model_validate(dict(r)) for r in rows]


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
    _require_limit(limit)
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
