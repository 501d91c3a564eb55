"""Request and response models for searching, holding, booking, and the desk's other work."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    Field,
    FiniteFloat,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from api.schemas import Input
from db.audit import ChangeEvent, LogEntry
from db.availability import Alternatives, SearchHit
from db.overdue import OverdueRental

# Ids are bigint, but JavaScript clients cannot count past 2**53; nothing gets near either.
MAX_ID = 2**53 - 1


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded at all.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _plausible(value: datetime) -> datetime:
    # The year of the given local time, not UTC: converting an extreme value could overflow.
    if not 2000 <= value.year < 2100:
        raise ValueError("must be a time between the years 2000 and 2099")
    return value


class _Storable:
    """Text PostgreSQL can store; the schema says "no NUL", the validator says why not."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_storable, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out.setdefault("pattern", "^[^\\u0000]*$")
        return out


STORABLE = _Storable()


def _words(max_length: int) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length)


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
When = Annotated[
    AwareDatetime,
    AfterValidator(_plausible),
    Field(
        description="ISO 8601 with offset, e.g. 2026-11-25T10:00:00+01:00 (years 2000-2099).",
        json_schema_extra={"pattern": r"^20[0-9]{2}-"},
    ),
]
Reason = Annotated[str, _words(200), STORABLE]
Note = Annotated[str, _words(1000), STORABLE]
Reference = Annotated[str, _words(60), STORABLE]
Feature = Annotated[str, _words(40), STORABLE]
Code = Annotated[str, _words(20), STORABLE]
Features = Annotated[
    list[Feature],
    Field(max_length=20, description="Features the vehicle must all have, e.g. towbar."),
]


# Searching and holding


class SearchIn(Input):
    start: When
    end: When
    location_id: Id = Field(description="The pickup location.")
    category_id: Id | None = Field(default=None, description="Only this category.")
    features: Features = Field(default_factory=list)
    limit: int = Field(default=50, ge=1, le=1000)
    with_alternatives: bool | None = Field(
        default=None,
        description="Upgrades, other lots and the nearest free periods (needs category_id). "
        "Omitted: only when nothing fits. true: always. false: never.",
    )


class SearchOut(BaseModel):
    results: list[SearchHit] = Field(description="Free for the whole period plus prep buffer.")
    alternatives: Alternatives | None = Field(
        description="What else to offer; null when not worked out (see with_alternatives)."
    )


class LockIn(Input):
    vehicle_id: Id
    start: When
    end: When
    location_id: Id = Field(description="Where the customer picks the vehicle up.")
    return_location_id: Id | None = Field(
        default=None, description="Where it comes back; the pickup location when omitted."
    )
    ttl_seconds: int = Field(
        default=600, ge=10, le=7200, description="How long the hold lasts unless converted."
    )


class LockExtendIn(Input):
    ttl_seconds: int = Field(
        default=600, ge=10, le=7200, description="The hold now runs out this long from now."
    )


# Reservations and rentals


class ReservationIn(Input):
    """Either `hold_id` (convert your hold) or vehicle_id, start, end and location_id."""

    customer_id: Id
    hold_id: Id | None = Field(default=None, description="A live hold to turn into this booking.")
    vehicle_id: Id | None = None
    start: When | None = None
    end: When | None = None
    location_id: Id | None = Field(default=None, description="The pickup location.")
    return_location_id: Id | None = None
    reference: Reference | None = Field(default=None, description="Your booking reference.")


class CancelIn(Input):
    reason: Reason = "cancelled"


class PickupIn(Input):
    at: When | None = Field(
        default=None, description="When the keys were handed over; now if omitted."
    )


class ReturnIn(Input):
    at: When | None = Field(default=None, description="The actual return time; now if omitted.")
    location_id: Id | None = Field(
        default=None, description="Where it came back; the booked return location if omitted."
    )
    odometer_km: int | None = Field(default=None, ge=0, le=10_000_000)
    needs_maintenance: bool = Field(
        default=False, description="Damaged: to maintenance instead of cleaning."
    )
    notes: Annotated[str, Field(max_length=1000), STORABLE] = ""


class ExtendIn(Input):
    new_end: When


# Conflicts, overdue returns, audit


class SwapIn(Input):
    block_id: Id = Field(description="The booking at risk (a conflict's block_id).")
    vehicle_id: Id = Field(description="The vehicle to move it to (a suggestion's vehicle_id).")
    reason: Reason = "swap"


class AlertNoteIn(Input):
    overdue_id: Id = Field(description="The alert (an overdue entry's alert_id).")
    note: Note


class OverdueOut(OverdueRental):
    alert_id: int | None = Field(
        description="The open alert for this rental; null until the overdue check raised one."
    )
    alert_notes: str | None


class RollbackIn(Input):
    reason: Reason


class AuditTrail(BaseModel):
    status_changes: list[LogEntry] = Field(description="Status changes, newest first.")
    availability_changes: list[ChangeEvent] | None = Field(
        description="Every availability change (bookings, holds, transfers, status), newest "
        "first; null when filtering by location_id or until, which that log cannot answer."
    )


# Transfers and saved searches


class TransferIn(Input):
    vehicle_id: Id
    to_location_id: Id
    depart_at: When
    eta: When | None = Field(default=None, description="Estimated from the distance if omitted.")
    reference: Reference | None = None


class TransferStepIn(Input):
    at: When | None = Field(default=None, description="When it happened; now if omitted.")


class SearchCriteria(Input):
    location: Code | None = Field(default=None, description="Location code.")
    category: Code | None = Field(default=None, description="Category code.")
    features: Features | None = None
    duration_hours: FiniteFloat | None = Field(default=None, gt=0, le=9600)
    lead_hours: FiniteFloat | None = Field(
        default=None, ge=-9600, le=9600, description="Hours from now to pickup."
    )
    plate: Code | None = None
    customer: Annotated[str, _words(100), STORABLE] | None = None


class SavedSearchIn(Input):
    name: Annotated[str, _words(80), STORABLE]
    criteria: SearchCriteria
