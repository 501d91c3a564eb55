"""Overdue returns: who is late, how late, escalation level, estimated late fee, contact."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from pydantic import BaseModel, Field, computed_field
from sqlalchemy import Connection, text

from db.errors import InvalidInput, NotFound
from db.events import emit
from db.notifications import MIN_OVERDUE_LEVEL
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
    escalation_level: int = Field(
        description="Thresholds passed (FLEET_OVERDUE_THRESHOLDS_MINUTES), never below the level"
        " the open alert already reached: a level never goes down while its alert is open."
    )
    estimated_late_fee: Decimal
    next_block_id: int | None
    next_block_start: datetime | None
    last_contact_attempt: datetime | None = Field(
        default=None,
        description="The latest attempt to reach the customer about this rental, kept when"
        " its alert was resolved and reopened.",
    )

    # Derived, so it can never disagree with the level it describes.
    @computed_field(
        description=f"True from level {MIN_OVERDUE_LEVEL}, the level from which e-mail,"
        " webhooks and push notify staff."
    )
    @property
    def escalated(self) -> bool:
        return self.escalation_level >= MIN_OVERDUE_LEVEL


class HasThresholds(Protocol):
    """What configured_thresholds reads: fleet.settings.Settings (the engine never imports it)."""

    @property
    def overdue_thresholds_minutes(self) -> Sequence[int]: ...


def configured_thresholds(settings: HasThresholds) -> tuple[int, ...]:
    """Return the escalation thresholds every surface must use, checked, from the settings.

    The API, the CLI, the flow and the dashboard all call this with their settings object
    (read once per process), so no surface falls back to DEFAULT_THRESHOLDS by omission.
    """
    thresholds = tuple(settings.overdue_thresholds_minutes)
    try:
        _check_thresholds(thresholds)
    except InvalidInput as exc:
        raise InvalidInput(
            str(exc),
            field="overdue_thresholds_minutes",
            hint="set FLEET_OVERDUE_THRESHOLDS_MINUTES to increasing minutes from 0,"
            " for example [0,120,360,1440]",
        ) from None
    return thresholds


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

    Once the grace period is used up the whole lateness is charged, its hours counted from the
    due time, not from the end of grace (the grace is a courtesy, not a discount); each 24 h
    costs at most the daily rate. `overdue_by` is elapsed time (timestamptz arithmetic), so a
    "day" is 24 elapsed hours even when a daylight-saving change makes the local day 23 or 25.
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
    """Return open rentals past their expected return, most overdue first.

    Callers pass configured_thresholds(settings); the defaults are for tests and tools only.
    """
    _check_thresholds(thresholds)
    rows = [
        dict(r) for r in conn.execute(query("overdue"), {"now": now, "loc": location_id}).mappings()
    ]
    alerts = _alert_memory(conn, [r["block_id"] for r in rows])
    out = []
    for data in rows:
        hourly, daily, grace = data.pop("hourly_rate"), data.pop("daily_rate"), data.pop("grace")
        open_level, data["last_contact_attempt"] = alerts.get(data["block_id"], (None, None))
        level = escalation_level(data["overdue_by"], thresholds)
        # An open alert keeps the level it reached (and announced): thresholds raised since,
        # or a process on other settings, must not show or write a lower one.
        data["escalation_level"] = max(level, open_level or 0)
        data["estimated_late_fee"] = late_fee(
            data["overdue_by"], hourly_rate=hourly, daily_rate=daily, grace_period=grace
        )
        out.append(OverdueRental.model_validate(data))
    return out


def _alert_memory(
    conn: Connection, block_ids: list[int]
) -> dict[int, tuple[int | None, datetime | None]]:
    """Per rental: the open alert's level, and the last contact attempt over all its alerts."""
    if not block_ids:
        return {}
    rows = conn.execute(
        text(
            "SELECT block_id, max(escalation_level) FILTER (WHERE resolved_at IS NULL) AS lvl,"
            " max(last_contact_attempt) AS contact FROM overdue_vehicles"
            " WHERE block_id = ANY(CAST(:b AS bigint[])) GROUP BY block_id"
        ),
        {"b": block_ids},
    ).all()
    return {r.block_id: (r.lvl, r.contact) for r in rows}


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

    An alert staff resolved stays resolved until the rental reaches a higher level. An open
    alert's level never goes down (list_overdue keeps it), so whatever mix of callers and
    settings refreshes, each level is crossed, announced and notified once per alert. A new
    alert for a rental whose earlier alert was resolved keeps its last contact attempt.
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
                    " last_contact_attempt, refreshed_at)"
                    " VALUES (:v, :b, :c, :exp, :exp, :lvl, :fee, :contact, :now)"
                ),
                {
                    "v": o.vehicle_id,
                    "b": o.block_id,
                    "c": o.customer_id,
                    "exp": o.expected_return,
                    "lvl": o.escalation_level,
                    "fee": o.estimated_late_fee,
                    "contact": o.last_contact_attempt,
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
                    "UPDATE overdue_vehicles"
                    " SET escalation_level = GREATEST(escalation_level, :lvl),"
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
