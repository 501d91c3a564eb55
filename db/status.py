"""Vehicle status: the state machine and the one function every status change goes through."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, text

from db.errors import InvalidInput, InvalidTransition, NotFound, StaleVersion
from db.events import emit, to_json
from db.timeutil import require_aware

STATUSES = (
    "available",
    "reserved",
    "rented",
    "cleaning",
    "maintenance",
    "in_transit",
    "out_of_service",
)

# Overdue is not here on purpose: it is derived from an open rental past its expected return.
TRANSITIONS: dict[str, frozenset[str]] = {
    "available": frozenset(
        {"reserved", "rented", "cleaning", "maintenance", "in_transit", "out_of_service"}
    ),
    "reserved": frozenset({"available", "rented", "maintenance", "in_transit", "out_of_service"}),
    "rented": frozenset({"cleaning", "available", "maintenance"}),
    "cleaning": frozenset({"available", "maintenance", "out_of_service"}),
    "maintenance": frozenset({"available", "cleaning", "out_of_service"}),
    "in_transit": frozenset({"available", "cleaning", "maintenance"}),
    "out_of_service": frozenset({"maintenance", "available"}),
}

# Statuses whose end is promised by expected_available_at; past it, the vehicle is late.
TIMED_STATUSES = frozenset({"rented", "maintenance", "in_transit"})

_STATE_FIELDS = (
    "status",
    "location_id",
    "destination_location_id",
    "customer_id",
    "block_id",
    "expected_available_at",
)


class VehicleStatus(BaseModel):
    """The live truth about one vehicle, as every terminal should see it."""

    vehicle_id: int
    plate: str
    make: str
    model: str
    category_code: str
    status: str
    location_id: int | None
    location_code: str | None
    time_zone: str | None
    destination_location_id: int | None
    destination_code: str | None
    customer_id: int | None
    customer_name: str | None
    customer_phone: str | None
    customer_email: str | None
    block_id: int | None
    expected_available_at: datetime | None
    overdue: bool
    version: int
    last_updated: datetime
    updated_by: int | None
    updated_by_name: str | None

    @property
    def whereabouts(self) -> str:
        """Say where the vehicle is in the words staff use."""
        if self.status == "rented":
            return "with customer"
        if self.status == "in_transit":
            return f"in transit to {self.destination_code}"
        if self.status in ("maintenance", "out_of_service"):
            return f"in maintenance at {self.location_code}"
        return f"on lot {self.location_code}"

    def state(self) -> dict[str, Any]:
        """Return the fields a status change sets, for the log's before/after snapshots."""
        return {
            "status": self.status,
            "location_id": self.location_id,
            "destination_location_id": self.destination_location_id,
            "customer_id": self.customer_id,
            "block_id": self.block_id,
            "expected_available_at": self.expected_available_at,
        }


class StatusChange(BaseModel):
    """What a status change produced: the new state, its log row and its event."""

    status: VehicleStatus
    log_id: int
    event_id: int
    old_status: str


_STATUS_SQL = """
SELECT s.vehicle_id, v.plate, v.make, v.model, c.code AS category_code,
       s.current_status AS status, s.location_id, l.code AS location_code, l.time_zone,
       s.destination_location_id, d.code AS destination_code,
       s.current_customer_id AS customer_id, cu.name AS customer_name,
       cu.phone AS customer_phone, cu.email AS customer_email,
       s.block_id, s.expected_available_at,
       (s.current_status = 'rented' AND s.expected_available_at < coalesce(:now, now()))
           AS overdue,
       s.version, s.last_updated, s.updated_by, u.full_name AS updated_by_name
FROM vehicle_status_realtime s
JOIN vehicles v ON v.id = s.vehicle_id
JOIN vehicle_categories c ON c.id = v.category_id
LEFT JOIN locations l ON l.id = s.location_id
LEFT JOIN locations d ON d.id = s.destination_location_id
LEFT JOIN customers cu ON cu.id = s.current_customer_id
LEFT JOIN users u ON u.id = s.updated_by
"""


def get_status(
    conn: Connection, *, vehicle_id: int, now: datetime | None = None, for_update: bool = False
) -> VehicleStatus:
    """Return one vehicle's current status, optionally locking it for a change."""
    sql = _STATUS_SQL + " WHERE s.vehicle_id = :id"
    if for_update:
        sql += " FOR UPDATE OF s"
    row = conn.execute(text(sql), {"id": vehicle_id, "now": now}).mappings().first()
    if row is None:
        raise NotFound(f"unknown vehicle id {vehicle_id}", field="vehicle_id")
    return VehicleStatus.model_validate(dict(row))


def list_status(
    conn: Connection,
    *,
    location_id: int | None = None,
    status: str | None = None,
    vehicle_ids: list[int] | None = None,
    now: datetime | None = None,
    limit: int = 1000,
) -> list[VehicleStatus]:
    """Return the fleet board: every vehicle's status, overdue first, then by plate.

    With `vehicle_ids`, exactly those vehicles (retired ones too: a client holding one in
    its list must learn what became of it).
    """
    if vehicle_ids is not None:
        sql = _STATUS_SQL + " WHERE s.vehicle_id = ANY(:ids)"
    else:
        sql = _STATUS_SQL + " WHERE v.active"
    if location_id is not None:
        sql += " AND s.location_id = :loc"
    if status is not None:
        if status == "overdue":
            sql += (
                " AND s.current_status = 'rented'"
                " AND s.expected_available_at < coalesce(:now, now())"
            )
        else:
            require_status(status)
            sql += " AND s.current_status = :status"
    sql += " ORDER BY overdue DESC, v.plate LIMIT :limit"
    rows = conn.execute(
        text(sql),
        {"loc": location_id, "status": status, "ids": vehicle_ids, "now": now, "limit": limit},
    ).mappings()
    return [VehicleStatus.model_validate(dict(r)) for r in rows]


def status_counts(conn: Connection, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Return vehicle counts per location and status, with overdue counted on its own."""
    rows = conn.execute(
        text(
            "SELECT l.code AS location, CASE WHEN s.current_status = 'rented'"
            " AND s.expected_available_at < coalesce(:now, now()) THEN 'overdue'"
            " ELSE s.current_status END AS status, count(*) AS vehicles"
            " FROM vehicle_status_realtime s JOIN vehicles v ON v.id = s.vehicle_id AND v.active"
            " LEFT JOIN locations l ON l.id = s.location_id"
            " GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        {"now": now},
    ).mappings()
    return [dict(r) for r in rows]


def require_status(status: str) -> str:
    """Return status if it is one we know, else raise InvalidInput listing them."""
    if status not in STATUSES:
        raise InvalidInput(
            f"unknown status {status!r}",
            field="status",
            hint=f"one of {', '.join(STATUSES)}",
        )
    return status


_UNSET: Any = object()


def change_status(
    conn: Connection,
    *,
    vehicle_id: int,
    new_status: str,
    changed_by: int,
    reason: str,
    expected_version: int | None = None,
    location_id: int | None = _UNSET,
    destination_location_id: int | None = _UNSET,
    customer_id: int | None = _UNSET,
    block_id: int | None = _UNSET,
    expected_available_at: datetime | None = _UNSET,
    metadata: dict[str, Any] | None = None,
    source: str | None = None,
    reverts_log_id: int | None = None,
    enforce_transitions: bool = True,
    allow_same: bool = False,
) -> StatusChange:
    """Change a vehicle's status: check version and transition, update, log and emit at once.

    Fields left unset keep their value where it still makes sense for the new status and are
    cleared where it does not (a customer only while rented, a destination only in transit).
    """
    require_status(new_status)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a reason is required for every status change", field="reason")
    if len(reason) > 200:
        raise InvalidInput("the reason is longer than 200 characters", field="reason")
    if expected_available_at not in (_UNSET, None):
        require_aware(expected_available_at, "expected_available_at")

    current = get_status(conn, vehicle_id=vehicle_id, for_update=True)
    if expected_version is not None and expected_version != current.version:
        raise StaleVersion(
            f"vehicle {current.plate} changed since you loaded it (you had version"
            f" {expected_version}, it is now {current.version}: {current.status})",
            hint="reload the vehicle and decide again with the current state",
            details={"current": current.model_dump(mode="json")},
        )
    old = current.state()
    if new_status == current.status and not allow_same:
        allowed = sorted(TRANSITIONS[current.status])
        raise InvalidTransition(
            f"vehicle {current.plate} is already {current.status}",
            field="status",
            hint=f"from {current.status} it can go to: {', '.join(allowed)}",
            details={"current": current.status, "allowed": allowed},
        )
    if (
        enforce_transitions
        and new_status != current.status
        and new_status not in TRANSITIONS[current.status]
    ):
        allowed = sorted(TRANSITIONS[current.status])
        raise InvalidTransition(
            f"vehicle {current.plate} cannot go from {current.status} to {new_status}",
            field="status",
            hint=f"from {current.status} it can go to: {', '.join(allowed)}",
            details={"current": current.status, "allowed": allowed},
        )

    given = {
        "location_id": location_id,
        "destination_location_id": destination_location_id,
        "customer_id": customer_id,
        "block_id": block_id,
        "expected_available_at": expected_available_at,
    }
    new = _next_state(old, new_status, given)
    _check_required(new, current.plate)

    row = conn.execute(
        text(
            "UPDATE vehicle_status_realtime SET current_status = :status,"
            " location_id = :location_id, destination_location_id = :destination_location_id,"
            " current_customer_id = :customer_id, block_id = :block_id,"
            " expected_available_at = :expected_available_at, version = version + 1,"
            " last_updated = clock_timestamp(), updated_by = :by"
            " WHERE vehicle_id = :vehicle_id RETURNING version"
        ),
        {**new, "by": changed_by, "vehicle_id": vehicle_id},
    ).one()
    version = row.version
    logged = conn.execute(
        text(
            "INSERT INTO vehicle_status_log (vehicle_id, old_status, new_status, old_location_id,"
            " new_location_id, old_state, new_state, version, changed_by, change_reason, source,"
            " metadata, reverts_log_id, changed_at)"
            " VALUES (:vehicle_id, :old_status, :new_status, :old_loc, :new_loc,"
            " CAST(:old_state AS jsonb), CAST(:new_state AS jsonb), :version, :by, :reason,"
            # Unless told, the author's account says who changed it: staff, a feed or the system.
            " coalesce(:source, (SELECT CASE WHEN u.username LIKE 'feed-%' THEN 'feed'"
            " WHEN u.role = 'system' THEN 'system' ELSE 'staff' END"
            " FROM users u WHERE u.id = :by)),"
            " CAST(:metadata AS jsonb), :reverts, clock_timestamp()) RETURNING id, source"
        ),
        {
            "vehicle_id": vehicle_id,
            "old_status": current.status,
            "new_status": new_status,
            "old_loc": current.location_id,
            "new_loc": new["location_id"],
            "old_state": to_json(old),
            "new_state": to_json(new),
            "version": version,
            "by": changed_by,
            "reason": reason,
            "source": source,
            "metadata": to_json(metadata or {}),
            "reverts": reverts_log_id,
        },
    ).one()
    log_id, source = logged.id, logged.source
    updated = get_status(conn, vehicle_id=vehicle_id)
    event_id = emit(
        conn,
        kind="status_changed",
        vehicle_id=vehicle_id,
        location_id=updated.location_id,
        actor_id=changed_by,
        payload={
            "log_id": log_id,
            "old_status": current.status,
            "reason": reason,
            "source": source,
            **updated.model_dump(mode="json"),
        },
    )
    return StatusChange(status=updated, log_id=log_id, event_id=event_id, old_status=current.status)


def _next_state(old: dict[str, Any], new_status: str, given: dict[str, Any]) -> dict[str, Any]:
    new = dict(old, status=new_status)
    # Which remembered fields still make sense in the new status; the rest are cleared.
    keeps = {
        "destination_location_id": new_status == "in_transit",
        "customer_id": new_status == "rented",
        "block_id": new_status in ("rented", "reserved", "in_transit"),
        "expected_available_at": new_status in TIMED_STATUSES | {"cleaning", "reserved"},
    }
    for field, value in given.items():
        if value is not _UNSET:
            new[field] = value
        elif field == "location_id":
            if old["status"] == "in_transit" and new_status != "in_transit":
                new[field] = old["destination_location_id"]  # arrived where it was going
        elif not keeps[field]:
            new[field] = None
    return new


def _check_required(new: dict[str, Any], plate: str) -> None:
    status = new["status"]
    if status == "in_transit" and (
        new["destination_location_id"] is None or new["expected_available_at"] is None
    ):
        raise InvalidTransition(
            f"vehicle {plate} cannot be in transit without a destination and an ETA",
            field="destination_location_id",
            hint="schedule a transfer, or give destination_location_id and expected_available_at",
        )
    if status == "rented" and (new["customer_id"] is None or new["expected_available_at"] is None):
        raise InvalidTransition(
            f"vehicle {plate} cannot be rented without a customer and an expected return",
            field="customer_id",
            hint="start the rental from its reservation, or give customer_id and the return time",
        )
    if status not in ("rented", "in_transit") and new["location_id"] is None:
        raise InvalidTransition(
            f"vehicle {plate} must be at a location when {status}",
            field="location_id",
        )
