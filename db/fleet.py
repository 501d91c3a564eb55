"""Fleet reference data: locations, vehicle categories, vehicles, customers and staff users."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import Connection, text

from db.errors import InvalidInput, NotFound
from db.events import emit, to_json
from db.timeutil import Duration, zone

PLATE_RE = re.compile(r"^[A-Z0-9][A-Z0-9 -]{0,10}[A-Z0-9]$")
VIN_RE = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
ROLES = ("agent", "manager", "analyst", "admin", "system")


class Location(BaseModel):
    id: int
    code: str
    name: str
    address: str
    latitude: float | None
    longitude: float | None
    time_zone: str


class Category(BaseModel):
    id: int
    code: str
    name: str
    prep_buffer: Duration
    hourly_rate: Decimal
    daily_rate: Decimal
    grace_period: Duration
    upgrade_rank: int
    seats: int


class Vehicle(BaseModel):
    id: int
    plate: str
    vin: str
    make: str
    model: str
    year: int
    colour: str
    category_id: int
    features: list[str]
    home_location_id: int
    odometer_km: int
    active: bool


class Customer(BaseModel):
    id: int
    name: str
    phone: str | None
    email: str | None
    licence_number: str | None


class User(BaseModel):
    id: int
    username: str
    full_name: str
    role: str
    home_location_id: int | None
    active: bool


def normalize_plate(plate: str) -> str:
    """Return the plate in canonical form (upper case, single spaces), or raise InvalidInput."""
    cleaned = re.sub(r"\s+", " ", plate.strip().upper())
    if not PLATE_RE.match(cleaned):
        raise InvalidInput(
            f"malformed plate {plate!r}",
            field="plate",
            hint="2-12 letters, digits, spaces or dashes, starting and ending with a letter/digit",
        )
    return cleaned


def create_location(
    conn: Connection,
    *,
    code: str,
    name: str,
    time_zone: str,
    address: str = "",
    latitude: float | None = None,
    longitude: float | None = None,
) -> Location:
    """Create a rental location."""
    zone(time_zone)
    row = conn.execute(
        text(
            "INSERT INTO locations (code, name, address, latitude, longitude, time_zone)"
            " VALUES (:code, :name, :address, :lat, :lon, :tz) RETURNING *"
        ),
        {
            "code": code.upper(),
            "name": name,
            "address": address,
            "lat": latitude,
            "lon": longitude,
            "tz": time_zone,
        },
    ).mappings()
    return Location.model_validate(dict(row.one()))


def create_category(
    conn: Connection,
    *,
    code: str,
    name: str,
    hourly_rate: Decimal | float,
    daily_rate: Decimal | float,
    upgrade_rank: int,
    prep_buffer: timedelta = timedelta(hours=1),
    grace_period: timedelta = timedelta(minutes=30),
    seats: int = 5,
) -> Category:
    """Create a vehicle category with its rates, buffer and place in the upgrade ladder."""
    row = conn.execute(
        text(
            "INSERT INTO vehicle_categories"
            " (code, name, prep_buffer, hourly_rate, daily_rate, grace_period, upgrade_rank, seats)"
            " VALUES (:code, :name, :buffer, :hourly, :daily, :grace, :rank, :seats) RETURNING *"
        ),
        {
            "code": code.upper(),
            "name": name,
            "buffer": prep_buffer,
            "hourly": hourly_rate,
            "daily": daily_rate,
            "grace": grace_period,
            "rank": upgrade_rank,
            "seats": seats,
        },
    ).mappings()
    return Category.model_validate(dict(row.one()))


def create_user(
    conn: Connection,
    *,
    username: str,
    full_name: str,
    role: str = "agent",
    home_location_id: int | None = None,
) -> User:
    """Create a staff user."""
    if role not in ROLES:
        raise InvalidInput(
            f"unknown role {role!r}", field="role", hint=f"one of {', '.join(ROLES)}"
        )
    row = conn.execute(
        text(
            "INSERT INTO users (username, full_name, role, home_location_id)"
            " VALUES (:u, :n, :r, :h) RETURNING *"
        ),
        {"u": username, "n": full_name, "r": role, "h": home_location_id},
    ).mappings()
    return User.model_validate(dict(row.one()))


def create_customer(
    conn: Connection,
    *,
    name: str,
    phone: str | None = None,
    email: str | None = None,
    licence_number: str | None = None,
) -> Customer:
    """Create a customer record."""
    row = conn.execute(
        text(
            "INSERT INTO customers (name, phone, email, licence_number)"
            " VALUES (:n, :p, :e, :l) RETURNING id, name, phone, email, licence_number"
        ),
        {"n": name, "p": phone, "e": email, "l": licence_number},
    ).mappings()
    return Customer.model_validate(dict(row.one()))


def create_vehicle(
    conn: Connection,
    *,
    plate: str,
    vin: str,
    make: str,
    model: str,
    year: int,
    category_id: int,
    home_location_id: int,
    created_by: int,
    colour: str = "",
    features: list[str] | tuple[str, ...] = (),
    odometer_km: int = 0,
) -> Vehicle:
    """Register a vehicle: it starts available at its home location, with a logged first status."""
    plate = normalize_plate(plate)
    vin = vin.strip().upper()
    if not VIN_RE.match(vin):
        raise InvalidInput(
            f"malformed VIN {vin!r}", field="vin", hint="17 characters, no I, O or Q"
        )
    row = conn.execute(
        text(
            "INSERT INTO vehicles (plate, vin, make, model, year, colour, category_id, features,"
            " home_location_id, odometer_km)"
            " VALUES (:plate, :vin, :make, :model, :year, :colour, :cat, :features, :home, :odo)"
            " RETURNING id, plate, vin, make, model, year, colour, category_id, features,"
            " home_location_id, odometer_km, active"
        ),
        {
            "plate": plate,
            "vin": vin,
            "make": make,
            "model": model,
            "year": year,
            "colour": colour,
            "cat": category_id,
            "features": sorted({f.strip().lower() for f in features if f.strip()}),
            "home": home_location_id,
            "odo": odometer_km,
        },
    ).mappings()
    vehicle = Vehicle.model_validate(dict(row.one()))
    state = {"status": "available", "location_id": home_location_id}
    conn.execute(
        text(
            "INSERT INTO vehicle_status_realtime"
            " (vehicle_id, current_status, location_id, version, updated_by)"
            " VALUES (:v, 'available', :loc, 1, :by)"
        ),
        {"v": vehicle.id, "loc": home_location_id, "by": created_by},
    )
    conn.execute(
        text(
            "INSERT INTO vehicle_status_log (vehicle_id, old_status, new_status, new_location_id,"
            " new_state, version, changed_by, change_reason, source)"
            " VALUES (:v, NULL, 'available', :loc, CAST(:state AS jsonb), 1, :by,"
            " 'vehicle registered', 'staff')"
        ),
        {"v": vehicle.id, "loc": home_location_id, "state": to_json(state), "by": created_by},
    )
    emit(
        conn,
        kind="vehicle_registered",
        vehicle_id=vehicle.id,
        location_id=home_location_id,
        actor_id=created_by,
        payload={"vehicle_id": vehicle.id, "plate": plate, "status": "available", "version": 1},
    )
    return vehicle


def get_location(conn: Connection, *, code: str | None = None, id: int | None = None) -> Location:
    """Return a location by code or id, or raise NotFound listing the known codes."""
    row = (
        conn.execute(
            text("SELECT * FROM locations WHERE code = :code OR id = :id"),
            {"code": code.upper() if code else None, "id": id},
        )
        .mappings()
        .first()
    )
    if row is None:
        known = conn.execute(text("SELECT code FROM locations ORDER BY code LIMIT 20")).scalars()
        raise NotFound(
            f"unknown location {code or id!r}",
            field="location",
            hint=f"known locations: {', '.join(known) or 'none yet'}",
        )
    return Location.model_validate(dict(row))


def get_category(conn: Connection, *, code: str | None = None, id: int | None = None) -> Category:
    """Return a category by code or id, or raise NotFound listing the known codes."""
    row = (
        conn.execute(
            text("SELECT * FROM vehicle_categories WHERE code = :code OR id = :id"),
            {"code": code.upper() if code else None, "id": id},
        )
        .mappings()
        .first()
    )
    if row is None:
        known = conn.execute(
            text("SELECT code FROM vehicle_categories ORDER BY upgrade_rank")
        ).scalars()
        raise NotFound(
            f"unknown category {code or id!r}",
            field="category",
            hint=f"known categories: {', '.join(known) or 'none yet'}",
        )
    return Category.model_validate(dict(row))


def get_vehicle(conn: Connection, *, id: int | None = None, plate: str | None = None) -> Vehicle:
    """Return a vehicle by id or exact plate, or raise NotFound."""
    row = (
        conn.execute(
            text(
                "SELECT id, plate, vin, make, model, year, colour, category_id, features,"
                " home_location_id, odometer_km, active FROM vehicles"
                " WHERE id = :id OR plate = :plate"
            ),
            {"id": id, "plate": normalize_plate(plate) if plate else None},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(
            f"unknown vehicle {plate or id!r}",
            field="vehicle",
            hint="type part of the plate to search: `fleet status PART`",
        )
    return Vehicle.model_validate(dict(row))


def get_user(conn: Connection, *, id: int | None = None, username: str | None = None) -> User:
    """Return a staff user by id or username, or raise NotFound."""
    row = (
        conn.execute(
            text("SELECT * FROM users WHERE id = :id OR username = :u"),
            {"id": id, "u": username},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"unknown user {username or id!r}", field="user")
    data = dict(row)
    data.pop("created_at", None)
    return User.model_validate(data)


def get_customer(conn: Connection, *, id: int) -> Customer:
    """Return a customer by id, or raise NotFound."""
    row = (
        conn.execute(
            text("SELECT id, name, phone, email, licence_number FROM customers WHERE id = :id"),
            {"id": id},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"unknown customer {id!r}", field="customer")
    return Customer.model_validate(dict(row))


def list_locations(conn: Connection) -> list[Location]:
    """Return every location, by code."""
    rows = conn.execute(text("SELECT * FROM locations ORDER BY code")).mappings()
    return [Location.model_validate(dict(r)) for r in rows]


def list_categories(conn: Connection) -> list[Category]:
    """Return every category, cheapest first (the upgrade ladder)."""
    rows = conn.execute(text("SELECT * FROM vehicle_categories ORDER BY upgrade_rank")).mappings()
    return [Category.model_validate(dict(r)) for r in rows]


def system_user_id(conn: Connection, username: str = "system", full_name: str = "System") -> int:
    """Return the id of a system account that automatic changes are attributed to.

    `system` for the pipeline's own work; `feed-contracts` and the like for each feed, so the
    audit trail says which outside system caused a change. Created on first use.
    """
    uid = conn.execute(text("SELECT id FROM users WHERE username = :u"), {"u": username}).scalar()
    if uid is None:
        uid = conn.execute(
            text(
                "INSERT INTO users (username, full_name, role) VALUES (:u, :name, 'system')"
                " ON CONFLICT (username) DO UPDATE SET username = EXCLUDED.username RETURNING id"
            ),
            {"u": username, "name": full_name},
        ).scalar_one()
    return uid


def feed_user_id(conn: Connection, feed: str) -> int:
    """Return the system account of one feed (contracts, maintenance, returns, transfers)."""
    return system_user_id(conn, f"feed-{feed}", f"{feed.capitalize()} feed")
