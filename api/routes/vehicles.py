"""Vehicles: the fleet list and lookup, one vehicle's status, and changing it."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from api.deps import transaction
from api.problems import ApiProblem
from api.schemas import StatusChangeOut, StatusUpdate
from api.schemas_booking import STORABLE
from api.security import Principal, reader, writer
from db import idempotency, lookup, status
from db.lookup import PlateMatch, RentalMatch
from db.status import STATUSES, VehicleStatus

router = APIRouter(prefix="/api/vehicles", tags=["vehicles"])
_ETAG = re.compile(r'^\s*(?:W/)?"?(\d+)"?\s*$')

CONFLICT = {409: {"description": "Stale version (body carries the current state) or not allowed"}}


@router.get("", response_model=list[VehicleStatus], summary="The fleet board, filtered")
def list_vehicles(
    request: Request,
    location_id: Annotated[int | None, Query(ge=1)] = None,
    status_: Annotated[
        str | None, Query(alias="status", json_schema_extra={"enum": list(STATUSES)})
    ] = None,
    limit: Annotated[int, Query(ge=1, le=20000)] = 1000,
    _: Principal = Depends(reader),
) -> list[VehicleStatus]:
    with transaction(request, read_only=True) as conn:
        return status.list_status(conn, location_id=location_id, status=status_, limit=limit)


@router.get(
    "/lookup/plate",
    response_model=list[PlateMatch],
    summary="Find vehicles by partial or misread plate",
)
def by_plate(
    request: Request,
    q: Annotated[
        str,
        Query(
            min_length=2,
            max_length=16,
            # What the engine reads: at least two letters or digits; spaces and dashes ignored.
            pattern=r"^[ -]*[A-Za-z0-9][ -]*[A-Za-z0-9][A-Za-z0-9 -]*$",
            description="Part of a plate: two or more letters or digits.",
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
    _: Principal = Depends(reader),
) -> list[PlateMatch]:
    with transaction(request, read_only=True) as conn:
        return lookup.find_by_plate(conn, query=q, limit=limit)


@router.get(
    "/lookup/customer",
    response_model=list[RentalMatch],
    summary="Find current and upcoming rentals by customer name (typos tolerated)",
)
def by_customer(
    request: Request,
    q: Annotated[str, Query(min_length=2, max_length=100), STORABLE],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
    _: Principal = Depends(reader),
) -> list[RentalMatch]:
    with transaction(request, read_only=True) as conn:
        return lookup.find_rentals_by_customer(conn, name=q, limit=limit)


@router.get(
    "/{vehicle_id}/status",
    response_model=VehicleStatus,
    summary="One vehicle's current status (ETag = version)",
    responses={404: {"description": "Unknown vehicle"}},
)
def get_vehicle_status(
    request: Request,
    response: Response,
    vehicle_id: int,
    _: Principal = Depends(reader),
) -> VehicleStatus:
    with transaction(request, read_only=True) as conn:
        current = status.get_status(conn, vehicle_id=vehicle_id)
    response.headers["ETag"] = f'"{current.version}"'
    return current


def _expected_version(body: StatusUpdate, if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return body.expected_version
    found = _ETAG.match(if_match)
    if not found:
        raise ApiProblem(
            400,
            f'If-Match must be the version number as an ETag, like "3"; got {if_match!r}',
            code="invalid_input",
            field="If-Match",
            hint="send the ETag from GET /api/vehicles/{id}/status",
        )
    version = int(found.group(1))
    if body.expected_version is not None and body.expected_version != version:
        raise ApiProblem(
            400,
            "If-Match and expected_version disagree",
            code="invalid_input",
            field="expected_version",
            hint="send one of them, or the same version in both",
        )
    return version


@router.put(
    "/{vehicle_id}/status",
    response_model=StatusChangeOut,
    summary="Change a vehicle's status (optimistic version check, idempotent with a key)",
    responses={
        **CONFLICT,
        400: {"description": "If-Match is not a version, or disagrees with expected_version"},
        404: {"description": "Unknown vehicle"},
    },
)
def put_vehicle_status(
    request: Request,
    vehicle_id: int,
    body: StatusUpdate,
    principal: Principal = Depends(writer),
    if_match: Annotated[
        str | None,
        Header(max_length=100, json_schema_extra={"pattern": r'^\s*(\*|(W/)?"?[0-9]+"?)\s*$'}),
    ] = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    expected = _expected_version(body, if_match)
    payload = body.model_dump(mode="json", exclude_none=True)
    fingerprint = idempotency.request_hash("PUT", request.url.path, payload)
    with transaction(request) as conn:
        if idempotency_key is not None:
            stored = idempotency.claim(
                conn,
                user_id=principal.id,
                key=idempotency_key,
                method="PUT",
                path=request.url.path,
                fingerprint=fingerprint,
            )
            if stored is not None:
                version = (stored.response.get("status") or {}).get("version")
                return JSONResponse(
                    stored.response,
                    status_code=stored.status_code,
                    headers={"Idempotent-Replayed": "true", "ETag": f'"{version}"'},
                )
        optional = {
            k: getattr(body, k)
            for k in ("location_id", "destination_location_id", "expected_available_at")
            if k in body.model_fields_set
        }
        change = status.change_status(
            conn,
            vehicle_id=vehicle_id,
            new_status=body.status,
            changed_by=principal.id,
            reason=body.reason,
            expected_version=expected,
            metadata=body.metadata,
            **optional,
        )
        out = StatusChangeOut(
            status=change.status, log_id=change.log_id, old_status=change.old_status
        ).model_dump(mode="json")
        if idempotency_key is not None:
            idempotency.remember(
                conn,
                user_id=principal.id,
                key=idempotency_key,
                method="PUT",
                path=request.url.path,
                fingerprint=fingerprint,
                status_code=200,
                response=out,
            )
    return JSONResponse(out, headers={"ETag": f'"{change.status.version}"'})
