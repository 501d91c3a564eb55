"""Reservations and rentals: book (from a hold or directly), cancel, pick up, extend, return."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from api.checks import fields_as, require_customer, require_location
from api.deps import transaction
from api.problems import ApiProblem
from api.schemas_booking import MAX_ID, CancelIn, ExtendIn, PickupIn, ReservationIn, ReturnIn
from api.security import Principal, writer
from db import holds, rentals
from db.blocks import Block

router = APIRouter(tags=["reservations"])

ReservationId = Annotated[int, Path(ge=1, le=MAX_ID, description="The reservation's id.")]
RentalId = Annotated[
    int, Path(ge=1, le=MAX_ID, description="The rental's id (its reservation's id; it keeps it).")
]
FORBIDDEN = {403: {"description": "Your role cannot book (analysts read only)"}}
NOT_OPEN = {422: {"description": "Invalid input, or the booking is not in a state for this"}}

_DIRECT = ("vehicle_id", "start", "end", "location_id")


def _check_shape(body: ReservationIn) -> None:
    given = body.model_fields_set
    if body.hold_id is not None:
        extra = [f for f in (*_DIRECT, "return_location_id") if f in given]
        if extra:
            raise ApiProblem(
                422,
                f"{extra[0]} comes from the hold; send either hold_id or a direct booking",
                code="invalid_input",
                field=extra[0],
                hint="leave out the vehicle and period when converting a hold",
            )
        return
    for name in _DIRECT:
        if getattr(body, name) is None:
            raise ApiProblem(
                422,
                f"{name}: required for a booking without a hold",
                code="invalid_input",
                field=name,
                hint="send hold_id, or vehicle_id, start, end and location_id",
            )


@router.post(
    "/api/reservations",
    response_model=Block,
    status_code=201,
    summary="Create a reservation from your hold, or directly",
    description="With `hold_id` your hold becomes the customer's reservation, keeping its "
    "vehicle and period; only the user who placed the hold can book it. Without it, "
    "vehicle_id, start, end and location_id book directly; the same rules as a hold apply "
    "(prep buffer, whereabouts, no overlap).",
    responses={
        **FORBIDDEN,
        404: {"description": "Unknown hold, vehicle, location or customer"},
        409: {
            "description": "The hold ran out (`hold_expired`), is another user's (`hold_taken`: "
            "`holder` and `expires_at` name them), was already booked (`hold_converted`: the "
            "reservation it became), or the period is spoken for (`blocking` names the "
            "booking), or the vehicle cannot be handed out then or there"
        },
        422: {"description": "Invalid input (the body names the field)"},
    },
)
def create_reservation(
    request: Request, body: ReservationIn, principal: Principal = Depends(writer)
) -> Block:
    _check_shape(body)
    with transaction(request) as conn:
        require_customer(conn, customer_id=body.customer_id)
        if body.hold_id is not None:
            with fields_as(block_id="hold_id"):
                return holds.convert_hold(
                    conn,
                    hold_id=body.hold_id,
                    customer_id=body.customer_id,
                    converted_by=principal.id,
                    reference=body.reference,
                )
        require_location(conn, location_id=body.return_location_id, field="return_location_id")
        with fields_as(location="location_id"):
            return rentals.reserve(
                conn,
                vehicle_id=body.vehicle_id,
                start=body.start,
                end=body.end,
                pickup_location_id=body.location_id,
                return_location_id=body.return_location_id,
                customer_id=body.customer_id,
                booked_by=principal.id,
                reference=body.reference,
            )


@router.post(
    "/api/reservations/{reservation_id}/cancel",
    response_model=Block,
    summary="Cancel a reservation not yet picked up; its period is free again at once",
    responses={**FORBIDDEN, 404: {"description": "Unknown reservation"}, **NOT_OPEN},
)
def cancel(
    request: Request,
    reservation_id: ReservationId,
    body: CancelIn | None = None,
    principal: Principal = Depends(writer),
) -> Block:
    reason = body.reason if body else "cancelled"
    with transaction(request) as conn, fields_as(block_id="reservation_id"):
        return rentals.cancel_reservation(
            conn, block_id=reservation_id, cancelled_by=principal.id, reason=reason
        )


@router.post(
    "/api/rentals/{rental_id}/pickup",
    response_model=Block,
    summary="Hand the car over: the reservation becomes a rental, the car is rented",
    responses={
        **FORBIDDEN,
        404: {"description": "Unknown reservation"},
        409: {"description": "The car's status does not allow it to go out"},
        **NOT_OPEN,
    },
)
def pickup(
    request: Request,
    rental_id: RentalId,
    body: PickupIn | None = None,
    principal: Principal = Depends(writer),
) -> Block:
    with transaction(request) as conn, fields_as(block_id="rental_id"):
        return rentals.pick_up(
            conn, block_id=rental_id, handed_over_by=principal.id, at=body.at if body else None
        )


@router.post(
    "/api/rentals/{rental_id}/return",
    response_model=Block,
    summary="Check a rental back in (actual time, lot, odometer); the car goes to cleaning",
    description="An early return frees the rest of the period at once. The car is cleaned for "
    "its category's prep buffer, or goes to maintenance with `needs_maintenance`.",
    responses={**FORBIDDEN, 404: {"description": "Unknown rental or location"}, **NOT_OPEN},
)
def return_rental(
    request: Request,
    rental_id: RentalId,
    body: ReturnIn | None = None,
    principal: Principal = Depends(writer),
) -> Block:
    body = body or ReturnIn()
    with transaction(request) as conn, fields_as(block_id="rental_id"):
        require_location(conn, location_id=body.location_id, field="location_id")
        return rentals.return_vehicle(
            conn,
            block_id=rental_id,
            received_by=principal.id,
            at=body.at,
            location_id=body.location_id,
            odometer_km=body.odometer_km,
            needs_maintenance=body.needs_maintenance,
            notes=body.notes,
        )


@router.post(
    "/api/rentals/{rental_id}/extend",
    response_model=Block,
    summary="Move a rental's (or reservation's) return; refused if it would collide",
    responses={
        **FORBIDDEN,
        404: {"description": "Unknown rental"},
        409: {"description": "The longer period collides; `blocking` names the booking"},
        **NOT_OPEN,
    },
)
def extend(
    request: Request, rental_id: RentalId, body: ExtendIn, principal: Principal = Depends(writer)
) -> Block:
    with transaction(request) as conn, fields_as(block_id="rental_id", end="new_end"):
        return rentals.extend_rental(
            conn, block_id=rental_id, new_end=body.new_end, extended_by=principal.id
        )
