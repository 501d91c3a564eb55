"""Availability search and booking locks (holds): find a free car, claim it while booking."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from api.checks import fields_as, require_category, require_location
from api.deps import transaction
from api.problems import ApiProblem
from api.schemas_booking import MAX_ID, LockIn, SearchIn, SearchOut
from api.security import Principal, reader, writer
from db import availability, holds
from db.blocks import Block

router = APIRouter(prefix="/api/availability", tags=["availability"])

HoldId = Annotated[int, Path(ge=1, le=MAX_ID, description="The hold's id.")]
FORBIDDEN = {403: {"description": "Your role cannot book (analysts read only)"}}


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


@router.delete(
    "/lock/{hold_id}",
    status_code=204,
    response_class=Response,
    summary="Release a lock (hold) before it runs out",
    responses={
        **FORBIDDEN,
        404: {"description": "Unknown hold"},
        409: {"description": "The hold already ran out, was released or converted"},
        422: {"description": "That id is not a hold"},
    },
)
def release(request: Request, hold_id: HoldId, principal: Principal = Depends(writer)) -> Response:
    with transaction(request) as conn, fields_as(block_id="hold_id"):
        holds.release_hold(conn, hold_id=hold_id, released_by=principal.id)
    return Response(status_code=204)


@router.get(
    "/locks",
    response_model=list[Block],
    summary="Your holds that are still running, soonest to expire first",
)
def my_locks(request: Request, principal: Principal = Depends(reader)) -> list[Block]:
    with transaction(request, read_only=True) as conn:
        return holds.list_holds(conn, held_by=principal.id)
