"""Overdue returns: who is late with escalation and fee, chasing them, and closing alerts."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from api.checks import fields_as
from api.deps import settings, transaction
from api.problems import ApiProblem
from api.schemas_booking import MAX_ID, AlertNoteIn, OverdueOut
from api.security import Principal, reader, supervisor, writer
from db import overdue
from db.overdue import RefreshSummary
from fleet.settings import Settings

log = logging.getLogger("fleet.api")

router = APIRouter(prefix="/api/availability", tags=["overdue"])

NO_ALERT = {404: {"description": "No open alert with that id"}}


@router.get(
    "/overdue",
    response_model=list[OverdueOut],
    summary="Rentals past their expected return: escalation level, late fee, contact",
    description="Most overdue first. Levels begin at FLEET_OVERDUE_THRESHOLDS_MINUTES (by "
    "default level 1 from the due time, 2 from 2 h late, 3 from 6 h, 4 from 24 h), the same "
    "on every surface; an open alert's level never goes down. `escalated` is true from "
    "level 2, where e-mail, webhooks and push notify staff. `alert_id` is the open alert to "
    "resolve or note a contact attempt on; it is null until the overdue check (at server "
    "start, POST /api/availability/overdue/refresh, or the scheduled flow) raised one, or "
    "after the alert was resolved. `last_contact_attempt` survives a resolved alert.",
)
def list_overdue(
    request: Request,
    location_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Lot the car is due back at.")
    ] = None,
    _: Principal = Depends(reader),
) -> list[OverdueOut]:
    with transaction(request, read_only=True) as conn:
        late = overdue.list_overdue(
            conn,
            location_id=location_id,
            thresholds=overdue.configured_thresholds(settings(request)),
        )
        alerts = {a["block_id"]: a for a in overdue.open_alerts(conn)}
    out = []
    for rental in late:
        alert = alerts.get(rental.block_id, {})
        out.append(
            OverdueOut(
                **rental.model_dump(),
                alert_id=alert.get("id"),
                alert_notes=alert.get("resolution_notes"),
            )
        )
    return out


@router.post(
    "/overdue/refresh",
    response_model=RefreshSummary,
    summary="Run the overdue check now: raise, escalate and close alerts",
    description="New and escalated alerts are announced on the event stream. A resolved alert "
    "stays resolved until its rental reaches a higher level.",
    responses={
        403: {"description": "Your role cannot change alerts"},
        409: {"description": "Another overdue check ran at the same moment; try again"},
    },
)
def refresh(request: Request, _: Principal = Depends(writer)) -> RefreshSummary:
    try:
        with transaction(request) as conn:
            return overdue.refresh_overdue(
                conn, thresholds=overdue.configured_thresholds(settings(request))
            )
    except IntegrityError:
        # Two checks racing both open the same alert; one alert per rental is the rule.
        raise ApiProblem(
            409,
            "another overdue check ran at the same moment",
            code="conflict",
            hint="try again; the other check has done the work",
        ) from None


def refresh_at_start(engine: Engine, config: Settings) -> RefreshSummary | None:
    """Run the overdue check once as the server starts, so alerts show before the first
    scheduled run. A database that is not reachable yet only delays them to that run;
    thresholds that cannot work stop the start with the setting's name."""
    thresholds = overdue.configured_thresholds(config)
    try:
        with engine.begin() as conn:
            summary = overdue.refresh_overdue(conn, thresholds=thresholds)
    except SQLAlchemyError as exc:
        log.warning("overdue check at start skipped (%s); the scheduled flow will run it", exc)
        return None
    log.info("overdue check at start: %s", summary.model_dump())
    return summary


@router.post(
    "/alerts/resolve",
    status_code=204,
    response_class=Response,
    summary="Close an overdue alert with a note on how it was handled (managers, admins)",
    responses={
        403: {"description": "Only managers and admins resolve alerts"},
        **NO_ALERT,
        422: {"description": "Missing note or bad id (the body names the field)"},
    },
)
def resolve(
    request: Request, body: AlertNoteIn, principal: Principal = Depends(supervisor)
) -> Response:
    with transaction(request) as conn, fields_as(notes="note"):
        overdue.resolve_alert(
            conn, overdue_id=body.overdue_id, resolved_by=principal.id, notes=body.note
        )
    return Response(status_code=204)


@router.post(
    "/alerts/contact",
    status_code=204,
    response_class=Response,
    summary="Record an attempt to reach the late customer (call, SMS, e-mail)",
    responses={
        403: {"description": "Your role cannot change alerts"},
        **NO_ALERT,
        422: {"description": "Missing note or bad id (the body names the field)"},
    },
)
def contact(
    request: Request, body: AlertNoteIn, principal: Principal = Depends(writer)
) -> Response:
    with transaction(request) as conn:
        overdue.record_contact(
            conn, overdue_id=body.overdue_id, contacted_by=principal.id, note=body.note
        )
    return Response(status_code=204)
