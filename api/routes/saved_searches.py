"""Saved searches: each user's named availability filters, for the queries they run daily."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from api.deps import transaction
from api.schemas_booking import STORABLE, SavedSearchIn
from api.security import Principal, reader
from db import saved_searches
from db.saved_searches import SavedSearch

router = APIRouter(prefix="/api/saved-searches", tags=["saved searches"])


@router.get("", response_model=list[SavedSearch], summary="Your saved searches, by name")
def list_saved(request: Request, principal: Principal = Depends(reader)) -> list[SavedSearch]:
    with transaction(request, read_only=True) as conn:
        return saved_searches.list_saved(conn, user_id=principal.id)


@router.post(
    "",
    response_model=SavedSearch,
    status_code=201,
    summary="Save a search under a name (replacing yours of the same name)",
    responses={422: {"description": "Missing name or unknown criteria (the body names it)"}},
)
def save(
    request: Request, body: SavedSearchIn, principal: Principal = Depends(reader)
) -> SavedSearch:
    with transaction(request) as conn:
        return saved_searches.save(
            conn,
            user_id=principal.id,
            name=body.name,
            criteria=body.criteria.model_dump(mode="json", exclude_none=True),
        )


@router.delete(
    "/{name}",
    status_code=204,
    response_class=Response,
    summary="Delete one of your saved searches",
    responses={404: {"description": "You have no saved search of that name"}},
)
def delete(
    request: Request,
    name: Annotated[str, Path(min_length=1, max_length=80), STORABLE],
    principal: Principal = Depends(reader),
) -> Response:
    with transaction(request) as conn:
        saved_searches.delete(conn, user_id=principal.id, name=name)
    return Response(status_code=204)
