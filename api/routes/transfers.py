"""Transfers between lots: the ones under way or scheduled, booking one, departure, arrival."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from api.checks import fields_as
from api.deps import transaction
from api.schemas_booking import MAX_ID, TransferIn, TransferStepIn, When
from api.security import Principal, reader, writer
from db import transfers
from db.blocks import Block
from db.transfers import Transfer

router = APIRouter(prefix="/api/transfers", tags=["transfers"])

TransferId = Annotated[int, Path(ge=1, le=MAX_ID, description="The transfer's id.")]
FORBIDDEN = {403: {"description": "Your role cannot move vehicles"}}
STEP_ERRORS = {
    **FORBIDDEN,
    404: {"description": "Unknown transfer"},
    409: {"description": "The vehicle's status does not allow this step"},
    422: {"description": "Not an open transfer, already done, or a bad time"},
}


@router.get(
    "",
    response_model=list[Transfer],
    summary="Transfers in transit or scheduled, with ETA and how late they are",
)
def list_transfers(
    request: Request,
    location_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Leaving from or going to this lot.")
    ] = None,
    done_since: Annotated[
        When | None, Query(description="Also list transfers that arrived since this time.")
    ] = None,
    _: Principal = Depends(reader),
) -> list[Transfer]:
    with transaction(request, read_only=True) as conn:
        return transfers.list_transfers(
            conn, location_id=location_id, include_done_since=done_since
        )


@router.post(
    "",
    response_model=Block,
    status_code=201,
    summary="Schedule a transfer from where the vehicle will be at departure to another lot",
    description="The ETA is estimated from the distance between the lots unless given. The "
    "transfer claims the vehicle for the trip, so search will not offer it meanwhile.",
    responses={
        **FORBIDDEN,
        404: {"description": "Unknown vehicle or destination"},
        409: {"description": "The trip collides with a booking (`blocking` names it)"},
        422: {"description": "Invalid input (the body names the field)"},
    },
)
def schedule(request: Request, body: TransferIn, principal: Principal = Depends(writer)) -> Block:
    with transaction(request) as conn, fields_as(location="to_location_id", end="eta"):
        return transfers.schedule_transfer(
            conn,
            vehicle_id=body.vehicle_id,
            to_location_id=body.to_location_id,
            depart_at=body.depart_at,
            eta=body.eta,
            created_by=principal.id,
            reference=body.reference,
        )


@router.post(
    "/{transfer_id}/dispatch",
    response_model=Block,
    summary="Record the departure: the vehicle is in transit until its ETA",
    responses=STEP_ERRORS,
)
def dispatch(
    request: Request,
    transfer_id: TransferId,
    body: TransferStepIn | None = None,
    principal: Principal = Depends(writer),
) -> Block:
    with transaction(request) as conn, fields_as(block_id="transfer_id"):
        return transfers.dispatch(
            conn, block_id=transfer_id, changed_by=principal.id, at=body.at if body else None
        )


@router.post(
    "/{transfer_id}/arrive",
    response_model=Block,
    summary="Record the arrival: the vehicle is available at its new lot",
    responses=STEP_ERRORS,
)
def arrive(
    request: Request,
    transfer_id: TransferId,
    body: TransferStepIn | None = None,
    principal: Principal = Depends(writer),
) -> Block:
    with transaction(request) as conn, fields_as(block_id="transfer_id"):
        return transfers.arrive(
            conn, block_id=transfer_id, changed_by=principal.id, at=body.at if body else None
        )
