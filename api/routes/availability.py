"""Availability search and booking locks (holds): find a free car, claim it while booking."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from api.checks import fields_as, require_category, require_location
from api.deps import transaction
from api.problems import ApiProblem
from api.schemas_booking import MAX_ID, LockExtendIn, LockIn, Reason, SearchIn, SearchOut
from api.security import Principal, reader, writer
from db import availability, holds
from db.blocks import Block

router = APIRouter(prefix="/api/availability", tags=["availability"])

HoldId = Annotated[int, Path(ge=1, le=MAX_ID, description="The hold's id.")]
ReleaseReason = Annotated[
    Reason | None,
    Query(
        description="Why (needed when a manager or admin releases another user's hold; "
        "the holder is told)."
    ),
]
FORBIDDEN = {403: {"description": "Your role cannot book (analysts read only)"}}
TAKEN = (
    "The hold is another user's (`hold_taken`: `holder` and `expires_at` name them), already "
    "booked (`hold_converted`: the reservation it became), or ran out (`hold_expired`)"
)


@router.post(
    "/search",
    response_model=SearchOut,
    summary="Search vehicles free for a period at a location, with alternatives",
    description="A vehicle is offered only when it is free for the whole period plus its "
    "category's prep buffer, will be on the lot at pickup, and is fit to hand out. When "
    "nothing fits (or with `with_alternatives: true`) the answer also offers upgrades, the "
    "same category at other lots with the transfer time, and the nearest free periods.",
    responses={
        404: {"description": "Unknown location or category"},
        422: {"description": "Invalid criteria (the body names the field)"},
    },
)
def search(request: Request, body: SearchIn, _: Principal = Depends(reader)) -> SearchOut:
    if body.with_alternatives and body.category_id is None:
        raise ApiProblem(
            422,
            "alternatives are worked out for a category",
            code="invalid_input",
            field="category_id",
            hint="give category_id, or leave with_alternatives out",
        )
    with transaction(request, read_only=True) as conn:
        require_location(conn, location_id=body.location_id, field="location_id")
        require_category(conn, category_id=body.category_id)
        hits = availability.search(
            conn,
            start=body.start,
            end=body.end,
            location_id=body.location_id,
            category_id=body.category_id,
            features=body.features,
            limit=body.limit,
        )
        wanted = body.with_alternatives if body.with_alternatives is not None else not hits
        offer = None
        if wanted and body.category_id is not None:
            offer = availability.alternatives(
                conn,
                start=body.start,
                end=body.end,
                location_id=body.location_id,
                category_id=body.category_id,
                features=body.features,
            )
    return SearchOut(results=hits, alternatives=offer)


@router.post(
    "/lock",
    response_model=Block,
    status_code=201,
    summary="Lock a vehicle for a period while you complete the booking (a hold)",
    description="The hold claims the period (plus prep buffer) at once and runs out by itself "
    "after `ttl_seconds`. Of two clerks locking the same car for overlapping periods exactly "
    "one wins; the other gets 409 whose `blocking` list names the winner's hold.",
    responses={
        **FORBIDDEN,
        404: {"description": "Unknown vehicle or location"},
        409: {
            "description": "Already spoken for (`blocking` names the reservation, rental, "
            "maintenance or hold), or the vehicle cannot be handed out then or there"
        },
        422: {"description": "Invalid period or ttl (the body names the field)"},
    },
)
def lock(request: Request, body: LockIn, principal: Principal = Depends(writer)) -> Block:
    with transaction(request) as conn, fields_as(ttl="ttl_seconds", location="location_id"):
        require_location(conn, location_id=body.return_location_id, field="return_location_id")
        return holds.place_hold(
            conn,
            vehicle_id=body.vehicle_id,
            start=body.start,
            end=body.end,
            location_id=body.location_id,
            return_location_id=body.return_location_id,
            held_by=principal.id,
            ttl=timedelta(seconds=body.ttl_seconds),
        )


@router.post(
    "/lock/{hold_id}/extend",
    response_model=Block,
    summary="Give your lock (hold) more time: it runs out `ttl_seconds` from now",
    description="Only the user who placed the hold extends it; anyone else gets 409 "
    "`hold_taken` naming the holder and when the hold runs out.",
    responses={
        **FORBIDDEN,
        404: {"description": "Unknown hold"},
        409: {"description": TAKEN},
        422: {"description": "That id is not a hold, or an invalid ttl"},
    },
)
def extend(
    request: Request, hold_id: HoldId, body: LockExtendIn, principal: Principal = Depends(writer)
) -> Block:
    with transaction(request) as conn, fields_as(block_id="hold_id", ttl="ttl_seconds"):
        return holds.extend_hold(
            conn,
            hold_id=hold_id,
            extended_by=principal.id,
            ttl=timedelta(seconds=body.ttl_seconds),
        )


@router.delete(
    "/lock/{hold_id}",
    status_code=204,
    response_class=Response,
    summary="Release a lock (hold) before it runs out",
    description="You release your own holds. A manager or admin may release another user's "
    "hold with a `reason`: the release is in the audit trail as a `hold_released` event naming "
    "who and why, and the holder's open pages say so. An agent releasing someone else's hold "
    "gets 409 `hold_taken` naming the holder and when the hold runs out.",
    responses={
        **FORBIDDEN,
        404: {"description": "Unknown hold"},
        409: {"description": TAKEN},
        422: {"description": "That id is not a hold, or `reason` is missing for another's hold"},
    },
)
def release(
    request: Request,
    hold_id: HoldId,
    reason: ReleaseReason = None,
    principal: Principal = Depends(writer),
) -> Response:
    with transaction(request) as conn, fields_as(block_id="hold_id"):
        holds.release_hold(conn, hold_id=hold_id, released_by=principal.id, reason=reason)
    return Response(status_code=204)


@router.get(
    "/locks",
    response_model=list[Block],
    summary="Your holds that are still running, soonest to expire first",
)
def my_locks(request: Request, principal: Principal = Depends(reader)) -> list[Block]:
    with transaction(request, read_only=True) as conn:
        return holds.list_holds(conn, held_by=principal.id)
