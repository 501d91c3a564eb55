"""Conflicts: bookings their vehicle cannot honour, with concrete ways to resolve each."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import Connection, text

from db import availability
from db.blocks import Block, end_block, get_block, insert_block
from db.errors import HoldExpired, InvalidInput
from db.events import emit, to_json
from db.fleet import get_vehicle
from db.sqlfiles import query
from db.transfers import schedule_transfer

DEFAULT_HORIZON = timedelta(hours=48)

CAUSES = {
    "overdue_return": "the car is not back from its rental, which was due {due}",
    "maintenance_overrun": "maintenance was due to finish {due} and has not",
    "late_transfer": "the car was due to arrive from a transfer {due} and has not",
    "not_back_in_time": "the car is only due back {due}, after the pickup",
    "out_of_service": "the car is out of service",
    "wrong_location": "the car will be at {where}, not at the pickup lot",
}


class Suggestion(BaseModel):
    """One concrete way out: swap to a named car, upgrade, or bring a car by transfer."""

    action: str  # swap | upgrade | transfer
    description: str
    vehicle_id: int
    plate: str
    category_code: str
    from_location_code: str | None = None
    depart_by: datetime | None = None


class Conflict(BaseModel):
    """A booking at risk, why, and how to resolve it."""

    kind: str
    severity: str  # critical: pickup within 2 h or already due; warning: later
    block_id: int
    block_kind: str
    vehicle_id: int
    plate: str
    location_code: str
    time_zone: str
    customer_name: str | None
    customer_phone: str | None
    starts: datetime
    ends: datetime
    cause: str
    cause_block_id: int | None
    suggestions: list[Suggestion]


def list_conflicts(
    conn: Connection,
    *,
    now: datetime | None = None,
    horizon: timedelta = DEFAULT_HORIZON,
    location_id: int | None = None,
    with_suggestions: bool = True,
    suggest_for: int = 25,
) -> list[Conflict]:
    """Return current and upcoming conflicts within the horizon, soonest first.

    Suggestions are worked out for the first `suggest_for` conflicts only.
    """
    if horizon <= timedelta(0) or horizon > timedelta(days=31):
        raise InvalidInput("horizon must be between 1 minute and 31 days", field="horizon")
    rows = (
        conn.execute(query("conflicts"), {"now": now, "horizon": horizon, "loc": location_id})
        .mappings()
        .all()
    )
    clock = now or conn.exec_driver_sql("SELECT now()").scalar_one()
    out = []
    for r in rows:
        due = (
            r["expected_available_at"].isoformat(timespec="minutes")
            if r["expected_available_at"]
            else "at an unknown time"
        )
        out.append(
            Conflict(
                kind=r["kind"],
                severity="critical" if r["starts"] - clock < timedelta(hours=2) else "warning",
                block_id=r["block_id"],
                block_kind=r["block_kind"],
                vehicle_id=r["vehicle_id"],
                plate=r["plate"],
                location_code=r["location_code"],
                time_zone=r["time_zone"],
                customer_name=r["customer_name"],
                customer_phone=r["customer_phone"],
                starts=r["starts"],
                ends=r["ends"],
                cause=CAUSES[r["kind"]].format(
                    due=due, where=r["location_at_start_code"] or "no lot"
                ),
                cause_block_id=_cause_block(r),
                # Each suggestion is a few searches; the soonest conflicts are the urgent ones.
                suggestions=_suggest(conn, r, now)
                if with_suggestions and len(out) < suggest_for
                else [],
            )
        )
    return out


def _cause_block(r) -> int | None:
    # The live status names the rental or transfer it is in; a car stranded elsewhere is
    # put there by the booking before this one, and workshop status does not carry its block.
    if r["kind"] == "wrong_location":
        return r["prev_block_id"]
    if r["kind"] == "maintenance_overrun" and r["cause_block_id"] is None:
        return r["prev_block_id"] if r["prev_kind"] == "maintenance" else None
    return r["cause_block_id"]


def _suggest(conn: Connection, r, now: datetime | None) -> list[Suggestion]:
    return suggest(
        conn,
        start=r["starts"],
        end=r["ends"],
        location_id=r["start_location_id"],
        category_id=r["category_id"],
        now=now,
    )


def suggest(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    location_id: int,
    category_id: int,
    now: datetime | None = None,
) -> list[Suggestion]:
    """Ways to serve a booking of this category at this lot: swap, upgrade, or transfer in."""
    start = max(start, now or start)
    if end <= start:
        return []
    out: list[Suggestion] = []
    for hit in availability.search(
        conn,
        start=start,
        end=end,
        location_id=location_id,
        category_id=category_id,
        now=now,
        limit=3,
    ):
        out.append(
            Suggestion(
                action="swap",
                description=f"move the booking to {hit.plate} ({hit.make} {hit.model}), free then",
                vehicle_id=hit.vehicle_id,
                plate=hit.plate,
                category_code=hit.category_code,
            )
        )
    alt = availability.alternatives(
        conn,
        start=start,
        end=end,
        location_id=location_id,
        category_id=category_id,
        now=now,
        per_option=2,
    )
    for hit in alt.upgrades:
        out.append(
            Suggestion(
                action="upgrade",
                description=f"upgrade to {hit.category_code} {hit.plate} ({hit.make} {hit.model})",
                vehicle_id=hit.vehicle_id,
                plate=hit.plate,
                category_code=hit.category_code,
            )
        )
    for other in alt.other_locations:
        hours = other.transfer_time.total_seconds() / 3600
        out.append(
            Suggestion(
                action="transfer",
                description=(
                    f"transfer {other.vehicle.plate} from {other.location_code}"
                    f" ({hours:.1f} h drive),"
                    f" leaving by {other.depart_by.isoformat(timespec='minutes')}"
                ),
                vehicle_id=other.vehicle.vehicle_id,
                plate=other.vehicle.plate,
                category_code=other.vehicle.category_code,
                from_location_code=other.location_code,
                depart_by=other.depart_by,
            )
        )
    return out


def suggest_for_booking(
    conn: Connection, *, block_id: int, now: datetime | None = None
) -> list[Suggestion]:
    """Return the ways to serve an open booking on another car (for a booking a feed hit).

    A feed collision stores suggestions made when the record arrived, sometimes for the feed's
    own period; these are for the booking in the way as it stands now, so applying one with
    `swap_vehicle` moves exactly that booking. A booking that cannot be swapped (a rental
    under way, an ended booking, a hold that ran out) gets none.
    """
    block = get_block(conn, block_id=block_id)
    clock = now or conn.exec_driver_sql("SELECT now()").scalar_one()
    if block.kind not in ("reservation", "hold") or block.state != "active":
        return []
    if block.kind == "hold" and block.expires_at is not None and block.expires_at <= clock:
        return []
    return suggest(
        conn,
        start=block.start,
        end=block.end,
        location_id=block.start_location_id,
        category_id=get_vehicle(conn, id=block.vehicle_id).category_id,
        now=now,
    )


def swap_vehicle(
    conn: Connection, *, block_id: int, vehicle_id: int, changed_by: int, reason: str = "swap"
) -> Block:
    """Move a booking to another vehicle: the old claim is released and the new one made at once.

    Both happen in the caller's transaction, so the customer is never left without a car,
    and the constraint still refuses the new vehicle if someone took it meanwhile.
    """
    old = get_block(conn, block_id=block_id, for_update=True)
    if old.kind not in ("reservation", "hold") or old.state != "active":
        raise InvalidInput(
            f"block #{block_id} is a {old.state} {old.kind}; only open bookings can be swapped",
            field="block_id",
        )
    clock = conn.exec_driver_sql("SELECT clock_timestamp()").scalar_one()
    if old.kind == "hold" and old.expires_at is not None and old.expires_at <= clock:
        # Copying a run-out hold would hand back a claim that already counts for nothing.
        raise HoldExpired(
            f"hold #{block_id} on {old.plate} ran out",
            field="block_id",
            hint="search again and place a new hold on the other vehicle",
        )
    if vehicle_id == old.vehicle_id:
        raise InvalidInput("that is the vehicle the booking already has", field="vehicle_id")
    availability.check_bookable(
        conn, vehicle_id=vehicle_id, start=old.start, location_id=old.start_location_id
    )
    # A savepoint, so a refused swap leaves the old booking active even if the caller
    # catches the conflict and carries on in the same transaction.
    with conn.begin_nested():
        end_block(
            conn,
            block_id=block_id,
            state="cancelled",
            changed_by=changed_by,
            reason=f"{reason}: moved to vehicle {vehicle_id}",
        )
        return insert_block(
            conn,
            vehicle_id=vehicle_id,
            kind="reservation" if old.kind == "reservation" else "hold",
            start=old.start,
            end=old.end,
            start_location_id=old.start_location_id,
            end_location_id=old.end_location_id,
            created_by=changed_by,
            customer_id=old.customer_id,
            reference=old.reference,
            expires_at=old.expires_at,
            notes=f"swapped from block #{block_id}",
            event_payload={"swapped_from": block_id},
        )


class ConflictRefresh(BaseModel):
    """What a conflict refresh announced."""

    open: int
    detected: int
    escalated: int
    cleared: int


def refresh_conflicts(
    conn: Connection, *, now: datetime | None = None, horizon: timedelta = DEFAULT_HORIZON
) -> ConflictRefresh:
    """Remember the open conflicts; emit an event for each new, newly critical or cleared one.

    Serialized by a transaction lock so two schedulers refreshing at once announce each
    conflict once.
    """
    conn.execute(text("SELECT pg_advisory_xact_lock(7340034)"))
    found = list_conflicts(conn, now=now, horizon=horizon, with_suggestions=False)
    known = {
        (r.block_id, r.kind): r
        for r in conn.execute(
            text(
                "SELECT id, block_id, kind, severity, vehicle_id, location_id FROM conflict_alerts"
                " WHERE cleared_at IS NULL AND kind = ANY(:kinds)"
            ),
            # Collisions reported by feeds are cleared by the feed, not by this derivation.
            {"kinds": list(CAUSES)},
        )
    }
    locations = {code: id_ for code, id_ in conn.execute(text("SELECT code, id FROM locations"))}
    detected = escalated = 0
    for c in found:
        location_id = locations.get(c.location_code)
        payload = {
            "block_id": c.block_id,
            "block_kind": c.block_kind,
            "conflict": c.kind,
            "severity": c.severity,
            "plate": c.plate,
            "location_code": c.location_code,
            "starts": c.starts,
            "cause": c.cause,
            "customer_name": c.customer_name,
        }
        row = known.pop((c.block_id, c.kind), None)
        if row is None:
            conn.execute(
                text(
                    "INSERT INTO conflict_alerts (block_id, kind, vehicle_id, location_id,"
                    " severity, details) VALUES (:b, :k, :v, :l, :s, CAST(:d AS jsonb))"
                ),
                {
                    "b": c.block_id,
                    "k": c.kind,
                    "v": c.vehicle_id,
                    "l": location_id,
                    "s": c.severity,
                    "d": to_json(payload),
                },
            )
            detected += 1
            emit(
                conn,
                kind="conflict_detected",
                vehicle_id=c.vehicle_id,
                location_id=location_id,
                payload=payload,
            )
        elif row.severity == "warning" and c.severity == "critical":
            conn.execute(
                text("UPDATE conflict_alerts SET severity = 'critical' WHERE id = :id"),
                {"id": row.id},
            )
            escalated += 1
            emit(
                conn,
                kind="conflict_escalated",
                vehicle_id=c.vehicle_id,
                location_id=location_id,
                payload=payload,
            )
    for row in known.values():
        conn.execute(
            text("UPDATE conflict_alerts SET cleared_at = now() WHERE id = :id"), {"id": row.id}
        )
        emit(
            conn,
            kind="conflict_cleared",
            vehicle_id=row.vehicle_id,
            location_id=row.location_id,
            payload={"block_id": row.block_id, "conflict": row.kind},
        )
    return ConflictRefresh(
        open=len(found), detected=detected, escalated=escalated, cleared=len(known)
    )


FEED_COLLISION = "feed_collision"


def record_feed_collision(
    conn: Connection, *, block_id: int, vehicle_id: int, location_id: int, details: dict
) -> bool:
    """Open an alert for a feed record the fleet cannot honour (once per record); announce it.

    `block_id` is the booking in the way. Returns whether a new alert was opened.
    """
    kind = f"{FEED_COLLISION}:{details['external_id']}"
    inserted = conn.execute(
        text(
            "INSERT INTO conflict_alerts (block_id, kind, vehicle_id, location_id, severity,"
            " details) SELECT :b, :k, :v, :l, 'critical', CAST(:d AS jsonb)"
            " WHERE NOT EXISTS (SELECT 1 FROM conflict_alerts WHERE kind = :k"
            " AND cleared_at IS NULL) RETURNING id"
        ),
        {"b": block_id, "k": kind, "v": vehicle_id, "l": location_id, "d": to_json(details)},
    ).scalar()
    if inserted is None:
        return False
    blocking = get_block(conn, block_id=block_id)
    emit(
        conn,
        kind="conflict_detected",
        vehicle_id=vehicle_id,
        location_id=location_id,
        payload={
            "block_id": block_id,
            "block_kind": blocking.kind,
            "conflict": FEED_COLLISION,
            "severity": "critical",
            "plate": blocking.plate,
            "starts": details.get("pickup_at"),
            "cause": details.get("reason"),
            "customer_name": blocking.customer_name,
            "external_id": details["external_id"],
            "suggestions": details.get("suggestions", []),
        },
    )
    return True


def clear_feed_collision(conn: Connection, *, external_id: str) -> int:
    """Close the collision alert of a feed record that now applied; announce the clearing."""
    rows = conn.execute(
        text(
            "UPDATE conflict_alerts SET cleared_at = now() WHERE kind = :k AND cleared_at IS NULL"
            " RETURNING block_id, vehicle_id, location_id"
        ),
        {"k": f"{FEED_COLLISION}:{external_id}"},
    ).all()
    for r in rows:
        emit(
            conn,
            kind="conflict_cleared",
            vehicle_id=r.vehicle_id,
            location_id=r.location_id,
            payload={
                "block_id": r.block_id,
                "conflict": FEED_COLLISION,
                "external_id": external_id,
            },
        )
    return len(rows)


class FeedCollision(BaseModel):
    """A feed record the fleet could not honour: what it wanted, what is in the way, ways out."""

    id: int
    external_id: str
    vehicle_id: int
    plate: str
    location_id: int | None
    blocking_block_id: int
    detected_at: datetime
    reason: str | None
    wanted_start: datetime | None
    wanted_end: datetime | None
    suggestions: list[Suggestion]


def open_feed_collisions(
    conn: Connection, *, location_id: int | None = None, limit: int = 200
) -> list[FeedCollision]:
    """Return the open collisions reported by feeds, newest first."""
    rows = conn.execute(
        text(
            "SELECT a.id, a.details, a.vehicle_id, v.plate, a.location_id, a.block_id,"
            " a.detected_at FROM conflict_alerts a JOIN vehicles v ON v.id = a.vehicle_id"
            " WHERE a.cleared_at IS NULL AND a.kind LIKE 'feed_collision:%'"
            " AND (CAST(:loc AS bigint) IS NULL OR a.location_id = :loc)"
            " ORDER BY a.detected_at DESC, a.id DESC LIMIT :limit"
        ),
        {"loc": location_id, "limit": limit},
    ).all()
    return [
        FeedCollision(
            id=r.id,
            external_id=r.details["external_id"],
            vehicle_id=r.vehicle_id,
            plate=r.plate,
            location_id=r.location_id,
            blocking_block_id=r.block_id,
            detected_at=r.detected_at,
            reason=r.details.get("reason"),
            wanted_start=r.details.get("pickup_at"),
            wanted_end=r.details.get("return_at"),
            suggestions=r.details.get("suggestions", []),
        )
        for r in rows
    ]


def apply_suggestion(
    conn: Connection, *, block_id: int, suggestion: Suggestion, user_id: int
) -> Block:
    """Move the booking onto the suggested car through the engine; return the new booking.

    A transfer suggestion first books the drive to the pickup lot, leaving when suggested
    (or now, if that moment has passed), so the swap's own check sees the car arrive in time
    and refuses, writing nothing, if it would not.
    """
    if suggestion.action == "transfer":
        booking = get_block(conn, block_id=block_id)
        now = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        schedule_transfer(
            conn,
            vehicle_id=suggestion.vehicle_id,
            to_location_id=booking.start_location_id,
            depart_at=max(suggestion.depart_by or now, now),
            created_by=user_id,
            reference=f"for booking #{block_id}",
        )
    return swap_vehicle(
        conn,
        block_id=block_id,
        vehicle_id=suggestion.vehicle_id,
        changed_by=user_id,
        reason=f"conflict {suggestion.action}",
    )
