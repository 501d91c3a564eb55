"""Request and response models shared by the routes (inputs, records, responses)."""

from __future__ import annotations

import types
from datetime import datetime
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from db.status import STATUSES, VehicleStatus

# PostgreSQL text cannot hold NUL characters: the schema says so, so clients know up front.
NO_NUL = "^[^\\u0000]*$"


def _scalars(annotation: Any) -> set[type]:
    """The JSON scalar types (bool, int, float) an annotation admits at its top level."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _scalars(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return set().union(*(_scalars(a) for a in get_args(annotation)))
    return {annotation} & {bool, int, float}


class Input(BaseModel):
    """Base for request bodies: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _json_types(cls, value: Any, info: ValidationInfo) -> Any:
        # Pydantic's lax mode reads 0 as false and true as 1; the schema says boolean or
        # number, so a client sending the other gets told instead of guessed at.
        field = cls.model_fields.get(info.field_name or "")
        kinds = _scalars(field.annotation) if field is not None else set()
        if bool in kinds and value is not None and not isinstance(value, bool):
            raise ValueError("must be true or false")
        if kinds and bool not in kinds and isinstance(value, bool):
            raise ValueError("must be a number, not true or false")
        return value


class StatusUpdate(Input):
    status: str = Field(
        description="The new status.", examples=["cleaning"], json_schema_extra={"enum": STATUSES}
    )
    reason: str = Field(
        min_length=1,
        max_length=200,
        description="Why; kept in the audit log.",
        json_schema_extra={"pattern": NO_NUL},
    )
    expected_version: int | None = Field(
        default=None, ge=0, description="The version you saw; or send it as If-Match."
    )
    location_id: int | None = Field(default=None, ge=1)
    destination_location_id: int | None = Field(default=None, ge=1)
    expected_available_at: datetime | None = Field(
        default=None, description="When the vehicle is free again (ISO 8601 with offset)."
    )
    metadata: dict[str, Any] | None = None


class StatusChangeOut(BaseModel):
    status: VehicleStatus
    log_id: int
    old_status: str


class Snapshot(BaseModel):
    """The fleet as of event `seq`: stream from `seq` to stay current."""

    seq: int = Field(description="Events up to this sequence number are reflected here.")
    full: bool = Field(description="True: `vehicles` is the whole (filtered) fleet.")
    since: int | None = None
    vehicles: list[VehicleStatus]
    events: list[dict[str, Any]] = Field(
        default_factory=list, description="With ?since=: the events after it, oldest first."
    )
    counts: list[dict[str, Any]] = Field(default_factory=list)
    as_of: datetime


class Me(BaseModel):
    id: int
    username: str
    full_name: str
    role: str
    home_location_id: int | None
    csrf_token: str | None = None
