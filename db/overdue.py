"""Overdue returns: who is late, how late, escalation level, estimated late fee, contact."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from pydantic import BaseModel
from sqlalchemy import Connection, text

from db.errors import InvalidInput, NotFound
from db.events import emit
from db.sqlfiles import query
from db.timeutil import Duration

# Minutes past expected return at which levels 1, 2, 3, 4 begin: 2 h+ is the first escalation.
DEFAULT_THRESHOLDS: tuple[int, ...] = (0, 120, 360, 1440)


class OverdueRental(BaseModel):
    """A rental past its expected return, with what staff need to chase it."""

    block_id: int
    vehicle_id: int
    plate: str
    make: str
    model: str
    category_code: str
    customer_id: int
    customer_name: str
    customer_phone: str | None
    customer_email: str | None
    location_id: int
    location_code: str
    time_zone: str
    expected_return: datetime
    overdue_by: Duration
    escalation_level: int
    estimated_late_fee: Decimal
    next_block_id: int | None
    next_block_start: datetime | None


def escalation_level(overdue_by: timedelta, thresholds: Sequence[int] = DEFAULT_THRESHOLDS) -> int:
    """Return the escalation level for a lateness: how many thresholds it has passed."""
    _check_thresholds(thresholds)
    minutes = overdue_by.total_seconds() / 60
    return max(1, sum(1 for t in thresholds if minutes >= t))


def late_fee(
    overdue_by: timedelta,
    *,
    hourly_rate: Decimal,
    daily_rate: Decimal,
    grace_period: timedelta,
) -> Decimal:
    """Estimate the late fee: nothing within grace, then per started hour, capped per day.

    Once the grace period is used up the whole lateness is charged (the grace is a courtesy,
    not a discount); each 24 h costs at most the daily rate.
    """
    if overdue_by <= grace_period:
        return Decimal("0.00")
    hours = math.ceil(overdue_by.total_seconds() / 3600)
    days, rest = divmod(hours, 24)
    fee = days * daily_rate + min(rest * hourly_rate, daily_rate)
    return Decimal(fee).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _check_thresholds(thresholds: Sequence[int]) -> None:
    if not thresholds or list(thresholds) != sorted(set(thresholds)) or thresholds[0] < 0:
        raise InvalidInput(
            f"escalation thresholds must be increasing minutes from 0: {list(thresholds)}",
            field="thresholds",
            hint="for example 0,120,360,1440",
        )


def list_overdue(
    conn: Connection,
    *,
    now: datetime | None = None,
    thresholds: Sequence[int] = DEFAULT_THRESHOLDS,
    location_id: int | None = None,
) -> list[OverdueRental]:
    """Return open rentals past their expected return, most overdue first."""
    _check_thresholds(thresholds)
    rows = conn.execute(query("overdue"), {"now": now, "loc": location_id}).mappings()
    out = []
    for r in rows:
        data = dict(r)
        hourly, daily, grace = data.pop("hourly_rate"), data.pop("daily_rate"), data.pop("grace")
        data["escalation_level"] = escalation_level(data["overdue_by"], thresholds)
        data["estimated_late_fee"] = late_fee(
            data["overdue_by"], hourly_rate=hourly, daily_rate=daily, grace_period=grace
        )
        out.append(OverdueRental.model_validate(data))
    return out


class RefreshSummary(BaseModel):
    """What a refresh of the overdue table changed."""

    open: int
    new: int
    escalated: int
    resolved: int


def refresh_overdue(
    conn: Connection,
    *,
    now: datetime | None = None,
    thresholds: Sequence[int] = DEFAULT_THRESHOLDS,
) -> RefreshSummary:
    """Bring overdue_vehicles up to date; emit an event for each new or escalated alert.

    An alert staff resolved stays resolved until the rental reaches a higher level.
    """
    # Two schedulers refreshing at once would both insert the same new alert.
    conn.execute(text("SELECT pg_advisory_xact_lock(7340035)"))
    current = list_overdue(conn, now=now, thresholds=thresholds)
    clock = now or conn.execute(text("SELECT now()")).scalar_one()
    new = escalated = 0
    for o in current:
        row = conn.execute(
            text(
                "SELECT id, escalation_level, resolved_at FROM overdue_vehicles"
                " WHERE block_id = :b ORDER BY id DESC LIMIT 1"
            ),
            {"b": o.block_id},
        ).first()
        if (
            row is not None
            and row.resolved_at is not None
            and row.escalation_level >= (o.escalation_level)
        ):
            continue
        if row is None or row.resolved_at is not None:
            conn.execute(
                text(
                    "INSERT INTO overdue_vehicles (vehicle_id, block_id, customer_id,"
                    " expected_return, overdue_since, escalation_level, estimated_late_fee,"
                    " refreshed_at) VALUES (:v, :b, :c, :exp, :exp, :lvl, :fee, :now)"
                ),
                {
                    "v": o.vehicle_id,
                    "b": o.block_id,
                    "c": o.customer_id,
                    "exp": o.expected_return,
                    "lvl": o.escalation_level,
                    "fee": o.estimated_late_fee,
                    "now": clock,
                },
            )
            new += 1
            changed = True
        else:
            changed = o.escalation_level > row.escalation_level
            escalated += int(changed)
            conn.execute(
                text(
                    "UPDATE overdue_vehicles SET escalation_level = :lvl,"
                    " estimated_late_fee = :fee, expected_return = :exp, refreshed_at = :now"
                    " WHERE id = :id"
                ),
                {
                    "lvl": o.escalation_level,
                    "fee": o.estimated_late_fee,
                    "exp": o.expected_return,
                    "now": clock,
                    "id": row.id,
                },
            )
        if changed:
            emit(
                conn,
                kind="overdue_escalated",
                vehicle_id=o.vehicle_id,
                location_id=o.location_id,
                payload=o.model_dump(mode="json"),
            )
    open_blocks = [o.block_id for o in current]
    resolved = conn.execute(
        text(
            "UPDATE overdue_vehicles SET resolved_at = :now,"
            " resolution_notes = coalesce(resolution_notes || E'\\n', '')"
            " || 'closed automatically: returned or extended'"
            " WHERE resolved_at IS NULL AND NOT (block_id = ANY(CAST(:open AS bigint[])))"
            " RETURNING vehicle_id, block_id"
        ),
        {"now": clock, "open": open_blocks},
    ).all()
    for r in resolved:
        emit(
            conn,
            kind="overdue_resolved",
            vehicle_id=r.vehicle_id,
            payload={"block_id": r.block_id, "automatic": True},
        )
    return RefreshSummary(open=len(current), new=new, escalated=escalated, resolved=len(resolved))


def resolve_alert(conn: Connection, *, overdue_id: int, resolved_by: int, notes: str) -> None:
    """Close an overdue alert with a note saying how it was handled."""
    if not notes.strip():
        raise InvalidInput("say how the alert was resolved", field="notes")
    row = conn.execute(
        text(
            "UPDATE overdue_vehicles SET resolved_at = clock_timestamp(), resolved_by = :by,"
            " resolution_notes = coalesce(resolution_notes || E'\\n', '') || :notes"
            " WHERE id = :id AND resolved_at IS NULL RETURNING vehicle_id, block_id"
        ),
        {"by": resolved_by, "notes": notes.strip(), "id": overdue_id},
    ).first()
    if row is None:
        raise NotFound(f"no open overdue alert #{overdue_id}", field="overdue_id")
    emit(
        conn,
        kind="overdue_resolved",
        vehicle_id=row.vehicle_id,
        actor_id=resolved_by,
        payload={"overdue_id": overdue_id, "block_id": row.block_id, "notes": notes.strip()},
    )


def record_contact(conn: Connection, *, overdue_id: int, contacted_by: int, note: str) -> None:
    """Note an attempt to reach the customer (call, SMS, e-mail) on an open alert."""
    row = conn.execute(
        text(
            "UPDATE overdue_vehicles SET last_contact_attempt = clock_timestamp(),"
            " resolution_notes = coalesce(resolution_notes || E'\\n', '') || :note"
            " WHERE id = :id AND resolved_at IS NULL RETURNING vehicle_id"
        ),
        {"note": note.strip() or "contact attempted", "id": overdue_id},
    ).first()
    if row is None:
        raise NotFound(f"no open overdue alert #{overdue_id}", field="overdue_id")
    emit(
        conn,
        kind="overdue_contacted",
        vehicle_id=row.vehicle_id,
        actor_id=contacted_by,
        payload={"overdue_id": overdue_id, "note": note},
    )


def open_alerts(conn: Connection) -> list[dict]:
    """Return the open rows of the overdue table, highest level first."""
    rows = conn.execute(
        text(
            "SELECT o.*, v.plate FROM overdue_vehicles o JOIN vehicles v ON v.id = o.vehicle_id"
            " WHERE o.resolved_at IS NULL ORDER BY o.escalation_level DESC, o.expected_return"
        )
    ).mappings()
    return [dict(r) for r in rows]
