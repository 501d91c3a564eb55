"""Reference data clients need to fill their forms: locations, categories, statuses."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from api.deps import transaction
from api.security import Principal, reader
from db import fleet, status
from db.fleet import Category, Location

router = APIRouter(prefix="/api", tags=["reference data"])


@router.get("/locations", response_model=list[Location], summary="Every rental location")
def locations(request: Request, _: Principal = Depends(reader)) -> list[Location]:
    with transaction(request, read_only=True) as conn:
        return fleet.list_locations(conn)


@router.get(
    "/categories",
    response_model=list[Category],
    summary="Every vehicle category, cheapest first (the upgrade ladder)",
    description="`prep_buffer` (ISO 8601 duration) is the time a car of the category needs "
    "after a rental before the next customer; search leaves it free.",
)
def categories(request: Request, _: Principal = Depends(reader)) -> list[Category]:
    with transaction(request, read_only=True) as conn:
        return fleet.list_categories(conn)


@router.get(
    "/statuses",
    response_model=dict[str, list[str]],
    summary="Every vehicle status and the statuses it may change to",
    description="Clients offer only these changes; the server refuses any other with 422.",
)
def statuses(_: Principal = Depends(reader)) -> dict[str, list[str]]:
    return {name: sorted(nexts) for name, nexts in status.TRANSITIONS.items()}
