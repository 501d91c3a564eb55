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


def events_since(conn: Connection, *, after_id: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    """Return committed events with id greater than after_id, oldest first."""
    rows = conn.execute(
        text(
            "SELECT id, kind, vehicle_id, location_id, actor_id, payload, created_at"
            " FROM availability_events WHERE id > :after ORDER BY id LIMIT :limit"
        ),
        {"after": after_id, "limit": limit},
    ).mappings()
    return [dict(r) for r in rows]
