"""Conflicts: bookings their vehicle cannot honour, with suggestions, and applying a swap."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from api.deps import transaction
from api.schemas_booking import MAX_ID, SwapIn
from api.security import Principal, reader, writer
from db import conflicts
from db.blocks import Block
from db.conflicts import Conflict, FeedCollision

router = APIRouter(prefix="/api/availability/conflicts", tags=["conflicts"])


@router.get(
    "",
    response_model=list[Conflict],
    summary="Bookings at risk now and within the horizon, soonest first, with suggestions",
    description="A booking is at risk when its car is late back (rental, maintenance, "
    "transfer), is due back only after the pickup, is out of service, or will be at another "
    "lot. Each comes with ways out: swap to a named free car, upgrade, or a transfer; apply a "
    "swap with POST /api/availability/conflicts/swap. Suggestions are worked out for the "
    "soonest 25.",
)
def list_conflicts(
    request: Request,
    location_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Pickup lot.")] = None,
    horizon_hours: Annotated[int, Query(ge=1, le=744, description="How far ahead to look.")] = 48,
    with_suggestions: bool = True,
    _: Principal = Depends(reader),
) -> list[Conflict]:
    with transaction(request, read_only=True) as conn:
        return conflicts.list_conflicts(
            conn,
            horizon=timedelta(hours=horizon_hours),
            location_id=location_id,
            with_suggestions=with_suggestions,
        )


@router.get(
    "/feeds",
    response_model=list[FeedCollision],
    summary="Contracts and other feed records the fleet could not honour, newest first",
    description="A feed record (a contract modified into another booking's period, a "
    "maintenance job over a rental) is not applied when it collides; the booking stays as it "
    "was and the collision waits here, with swap / upgrade / transfer suggestions, until a "
    "later version of the record fits (it then clears by itself).",
)
def list_feed_collisions(
    request: Request,
    location_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Pickup lot.")] = None,
    _: Principal = Depends(reader),
) -> list[FeedCollision]:
    with transaction(request, read_only=True) as conn:
        return conflicts.open_feed_collisions(conn, location_id=location_id)


@router.post(
    "/swap",
    response_model=Block,
    summary="Move a booking to another vehicle (apply a swap suggestion)",
    description="The old claim is released and the new one made in one transaction, so the "
    "customer is never left without a car. Answers with the new booking.",
    responses={
        403: {"description": "Your role cannot change bookings"},
        404: {"description": "Unknown booking or vehicle"},
        409: {
            "description": "The vehicle was taken meanwhile (`blocking` names it), cannot be "
            "handed out then or there, or the hold ran out"
        },
        422: {"description": "Invalid input, or the booking cannot be swapped"},
    },
)
def swap(request: Request, body: SwapIn, principal: Principal = Depends(writer)) -> Block:
    with transaction(request) as conn:
        return conflicts.swap_vehicle(
            conn,
            block_id=body.block_id,
            vehicle_id=body.vehicle_id,
            changed_by=principal.id,
            reason=body.reason,
        )
