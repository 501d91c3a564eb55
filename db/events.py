"""The events outbox: every availability change appends here in its own transaction."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

CHANNEL = "fleet_events"


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def to_json(value: Any) -> str:
    """Encode engine values (datetimes, decimals) as JSON text."""
    return json.dumps(value, default=_default, sort_keys=True)


def emit(
    conn: Connection,
    *,
    kind: str,
    payload: dict[str, Any],
    vehicle_id: int | None = None,
    location_id: int | None = None,
    actor_id: int | None = None,
) -> int:
    """Append an event and notify listeners of its id; both take effect only at commit."""
    event_id = conn.execute(
        text(
            "INSERT INTO availability_events (kind, vehicle_id, location_id, actor_id, payload)"
            " VALUES (:kind, :vehicle_id, :location_id, :actor_id, CAST(:payload AS jsonb))"
            " RETURNING id"
        ),
        {
            "kind": kind,
            "vehicle_id": vehicle_id,
            "location_id": location_id,
            "actor_id": actor_id,
            "payload": to_json(payload),
        },
    ).scalar_one()
    conn.execute(text("SELECT pg_notify(:channel, :id)"), {"channel": CHANNEL, "id": str(event_id)})
    return event_id


EVENT_COLUMNS = "seq, id, kind, vehicle_id, location_id, actor_id, payload, created_at"


def events_since(
    conn: Connection,
    *,
    after_seq: int = 0,
    limit: int = 1000,
    location_id: int | None = None,
    vehicle_id: int | None = None,
) -> list[dict[str, Any]]:
    """Return committed events with a sequence number above after_seq, in commit order.

    `seq` is assigned at commit under a lock (migration 0002), so the committed events are
    always a prefix of the sequence: a reader that remembers the last seq it saw can never
    skip an event whose transaction committed late.
    """
    rows = conn.execute(
        text(
            f"SELECT {EVENT_COLUMNS} FROM availability_events"  # noqa: S608 - fixed column list
            " WHERE seq > :after"
            " AND (CAST(:location_id AS bigint) IS NULL OR location_id = :location_id)"
            " AND (CAST(:vehicle_id AS bigint) IS NULL OR vehicle_id = :vehicle_id)"
            " ORDER BY seq LIMIT :limit"
        ),
        {
            "after": after_seq,
            "limit": limit,
            "location_id": location_id,
            "vehicle_id": vehicle_id,
        },
    ).mappings()
    return [dict(r) for r in rows]


def latest_seq(conn: Connection) -> int:
    """Return the sequence number of the newest committed event (0 when there is none)."""
    return conn.execute(text("SELECT coalesce(max(seq), 0) FROM availability_events")).scalar_one()
