"""The audit trail: a vehicle's 90-day history, the change log by filter, audited rollback."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy import Connection

from api.checks import fields_as
from api.deps import transaction
from api.schemas import StatusChangeOut
from api.schemas_booking import MAX_ID, AuditTrail, RollbackIn, When
from api.security import Principal, reader, supervisor
from db import audit, fleet

router = APIRouter(tags=["audit"])

Since = Annotated[
    When | None, Query(description="From this time (ISO 8601 with offset); 90 days back if none.")
]
Until = Annotated[When | None, Query(description="Before this time.")]
Limit = Annotated[int, Query(ge=1, le=10_000, description="At most this many of each.")]
OptionalId = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def _trail(
    conn: Connection,
    *,
    vehicle_id: int | None,
    user_id: int | None,
    location_id: int | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> AuditTrail:
    changes = audit.history(
        conn,
        vehicle_id=vehicle_id,
        user_id=user_id,
        location_id=location_id,
        since=since,
        until=until,
        limit=limit,
    )
    events = None
    if location_id is None and until is None:
        events = audit.availability_changes(
            conn, vehicle_id=vehicle_id, user_id=user_id, since=since, limit=limit
        )
    return AuditTrail(status_changes=changes, availability_changes=events)


@router.get(
    "/api/availability/history/{vehicle_id}",
    response_model=AuditTrail,
    summary="A vehicle's availability history: status changes and bookings (90 days)",
    responses={404: {"description": "Unknown vehicle"}},
)
def vehicle_history(
    request: Request,
    vehicle_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    since: Since = None,
    until: Until = None,
    limit: Limit = 500,
    _: Principal = Depends(reader),
) -> AuditTrail:
    with transaction(request, read_only=True) as conn:
        with fields_as(vehicle="vehicle_id"):
            fleet.get_vehicle(conn, id=vehicle_id)
        return _trail(
            conn,
            vehicle_id=vehicle_id,
            user_id=None,
            location_id=None,
            since=since,
            until=until,
            limit=limit,
        )


@router.get(
    "/api/availability/audit",
    response_model=AuditTrail,
    summary="Who changed what and when, filtered by vehicle, user, location and time",
)
def audit_log(
    request: Request,
    vehicle_id: OptionalId = None,
    user_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Who changed it.")] = None,
    location_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="The car left or reached this lot.")
    ] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 500,
    _: Principal = Depends(reader),
) -> AuditTrail:
    with transaction(request, read_only=True) as conn:
        return _trail(
            conn,
            vehicle_id=vehicle_id,
            user_id=user_id,
            location_id=location_id,
            since=since,
            until=until,
            limit=limit,
        )


@router.post(
    "/api/audit/{log_id}/rollback",
    response_model=StatusChangeOut,
    summary="Undo an incorrect status change by restoring the state before it (managers)",
    description="History is never deleted: the restoring change is logged too, linked to the "
    "one it reverts. Refused when later changes would be undone silently (the body lists "
    "them in `later_changes`) or when the change was already rolled back.",
    responses={
        403: {"description": "Only managers and admins roll back"},
        404: {"description": "Unknown change"},
        409: {"description": "Refused: later changes exist, or already rolled back"},
        422: {"description": "Missing reason"},
    },
)
def rollback(
    request: Request,
    log_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: RollbackIn,
    principal: Principal = Depends(supervisor),
) -> StatusChangeOut:
    with transaction(request) as conn:
        change = audit.rollback_change(
            conn, log_id=log_id, rolled_back_by=principal.id, reason=body.reason
        )
    return StatusChangeOut(status=change.status, log_id=change.log_id, old_status=change.old_status)
