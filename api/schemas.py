"""Request and response models shared by the routes (inputs, records, responses)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from db.status import VehicleStatus


class Input(BaseModel):
    """Base for request bodies: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class StatusUpdate(Input):
    status: str = Field(description="The new status.", examples=["cleaning"])
    reason: str = Field(min_length=1, max_length=200, description="Why; kept in the audit log.")
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
