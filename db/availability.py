"""Availability: which vehicles are free for a period at a location, and what else to offer."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import Connection, text

from db.blocks import find_blocking, location_at
from db.errors import InvalidInput, NotAvailable
from db.fleet import get_category, get_location, list_categories, list_locations
from db.sqlfiles import query
from db.status import get_status
from db.timeutil import Duration, require_period, zone
from db.transfers import transfer_duration


class SearchHit(BaseModel):
    """A vehicle free for the whole wanted period at the pickup location."""

    vehicle_id: int
    plate: str
    make: str
    model: str
    year: int
    colour: str
    category_code: str
    upgrade_rank: int
    features: list[str]
    odometer_km: int
    status: str
    free_since: datetime | None
    free_until: datetime | None
    arrives_from: int | None


class OtherLocationHit(BaseModel):
    """A free vehicle elsewhere that a transfer can bring to the pickup location in time."""

    location_id: int
    location_code: str
    transfer_time: Duration
    depart_by: datetime
    vehicle: SearchHit


class FreeWindow(BaseModel):
    """The nearest period of the wanted length when a vehicle of the category is free."""

    vehicle_id: int
    plate: str
    start: datetime
    end: datetime


class Alternatives(BaseModel):
    """What to offer when nothing fits the request exactly."""

    upgrades: list[SearchHit]
    other_locations: list[OtherLocationHit]
    nearest_windows: list[FreeWindow]


# How many of the nearest other lots alternatives look at for the same category.
NEARBY_LOTS = 5

_PLAN_GENERIC = text(
    "SELECT current_setting('plan_cache_mode'),"
    " set_config('plan_cache_mode', 'force_generic_plan', true)"
)
_PLAN_RESTORE = text("SELECT set_config('plan_cache_mode', :previous, true)")


def _features(features: list[str] | tuple[str, ...] | None) -> list[str]:
    return sorted({f.strip().lower() for f in features or () if f.strip()})


def search(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    location_id: int,
    category_id: int | None = None,
    features: list[str] | tuple[str, ...] | None = None,
    now: datetime | None = None,
    limit: int = 50,
) -> list[SearchHit]:
    """Return vehicles free for [start, end) plus prep buffer at the location, best first."""
    require_period(start, end)
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", field="limit")
    # A generic plan: planning this query costs more than running it (about 2 ms against
    # 2-3 ms at 100k vehicles), and the plan does not depend on the values: every step is
    # an index probe. SET LOCAL ends with the caller's transaction; the old value is put
    # back right after so nothing else in that transaction is affected.
    previous = conn.execute(_PLAN_GENERIC).scalar_one()
    rows = conn.execute(
        query("search"),
        {
            "start": start,
            "end": end,
            "location_id": location_id,
            # An id list rather than "id or NULL for all" keeps one plan good for both cases.
            "category_ids": [category_id] if category_id is not None else _all_categories(conn),
            "features": _features(features),
            "now": now,
            "limit": limit,
        },
    ).mappings()
    hits = [SearchHit.model_validate(dict(r)) for r in rows]
    conn.execute(_PLAN_RESTORE, {"previous": previous})
    return hits


def _all_categories(conn: Connection) -> list[int]:
    return list(conn.execute(text("SELECT id FROM vehicle_categories")).scalars())


def check_bookable(conn: Connection, *, vehicle_id: int, start: datetime, location_id: int) -> None:
    """Raise NotAvailable unless the vehicle can be handed out at the location at start.

    Overlap itself is left to the exclusion constraint; this checks what it cannot see:
    the car's condition, whether it is late, and where it will be.
    """
    status = get_status(conn, vehicle_id=vehicle_id)
    if status.status == "out_of_service":
        raise NotAvailable(f"{status.plate} is out of service", field="vehicle_id")
    late = conn.execute(
        text(
            "SELECT current_status IN ('rented', 'maintenance', 'in_transit')"
            " AND coalesce(expected_available_at, '-infinity') < now()"
            " FROM vehicle_status_realtime WHERE vehicle_id = :v"
        ),
        {"v": vehicle_id},
    ).scalar_one()
    busy_until = status.expected_available_at
    if (
        not late
        and status.status in ("rented", "maintenance", "in_transit", "cleaning")
        and busy_until is not None
        and busy_until > start
    ):
        # The live status promises the car only from busy_until, block or no block.
        raise NotAvailable(
            f"{status.plate} is {status.status} until {busy_until.isoformat()}",
            field="start",
            hint="start after that time, or offer another vehicle",
        )
    if late:
        raise NotAvailable(
            f"{status.plate} is not back yet ({status.status}, was due"
            f" {status.expected_available_at}) and cannot be promised to anyone",
            field="vehicle_id",
            hint="offer another vehicle; search shows what is free",
        )
    where = location_at(conn, vehicle_id=vehicle_id, at=start)
    if where != location_id:
        here = get_location(conn, id=location_id).code
        there = get_location(conn, id=where).code if where else "no lot"
        raise NotAvailable(
            f"{status.plate} will be at {there}, not {here}, at {start.isoformat()}",
            field="location_id",
            hint="pick a car that will be on this lot, or schedule a transfer first",
        )


def alternatives(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    location_id: int,
    category_id: int,
    features: list[str] | tuple[str, ...] | None = None,
    now: datetime | None = None,
    per_option: int = 5,
    horizon: timedelta = timedelta(days=14),
) -> Alternatives:
    """Return upgrades, the same category elsewhere (with transfer time), and nearest windows."""
    require_period(start, end)
    wanted = get_category(conn, id=category_id)
    upgrades: list[SearchHit] = []
    for cat in list_categories(conn):
        if cat.upgrade_rank <= wanted.upgrade_rank or len(upgrades) >= per_option:
            continue
        upgrades += search(
            conn,
            start=start,
            end=end,
            location_id=location_id,
            category_id=cat.id,
            features=features,
            now=now,
            limit=per_option - len(upgrades),
        )

    here = get_location(conn, id=location_id)
    clock = now or conn.execute(text("SELECT now()")).scalar_one()
    others: list[OtherLocationHit] = []
    # Nearest lots first, and only a few: nobody drives a car in from the far end of the
    # network, and each lot asked is one more search.
    nearby = sorted(
        (
            (transfer_duration(loc, here), loc)
            for loc in list_locations(conn)
            if loc.id != location_id
        ),
        key=lambda pair: pair[0],
    )[:NEARBY_LOTS]
    for travel, loc in nearby:
        depart_by = start - travel
        if depart_by <= clock:
            continue
        for hit in search(
            conn,
            start=depart_by,
            end=end,
            location_id=loc.id,
            category_id=category_id,
            features=features,
            now=now,
            limit=2,
        ):
            others.append(
                OtherLocationHit(
                    location_id=loc.id,
                    location_code=loc.code,
                    transfer_time=travel,
                    depart_by=depart_by,
                    vehicle=hit,
                )
            )
    others.sort(key=lambda o: o.transfer_time)
    return Alternatives(
        upgrades=upgrades,
        other_locations=others[:per_option],
        nearest_windows=nearest_windows(
            conn,
            start=start,
            end=end,
            location_id=location_id,
            category_id=category_id,
            features=features,
            now=now,
            horizon=horizon,
            limit=per_option,
        ),
    )


def nearest_windows(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    location_id: int,
    category_id: int,
    features: list[str] | tuple[str, ...] | None = None,
    now: datetime | None = None,
    horizon: timedelta = timedelta(days=14),
    limit: int = 5,
) -> list[FreeWindow]:
    """Return the earliest periods of the same length, at or after start, with a free car."""
    length = end - start
    rows = conn.execute(
        query("nearest_windows"),
        {
            "start": start,
            "cat": category_id,
            "loc": location_id,
            "features": _features(features),
            "horizon": horizon,
            "len": length,
        },
    ).all()
    windows: list[FreeWindow] = []
    buffer = get_category(conn, id=category_id).prep_buffer
    # Verify each candidate for that one car (condition, whereabouts, overlap with buffer):
    # a few index probes each, where a full search per candidate read the whole lot.
    for vehicle_id, s in sorted(rows, key=lambda r: r.s):
        try:
            check_bookable(conn, vehicle_id=vehicle_id, start=s, location_id=location_id)
        except NotAvailable:
            continue
        if find_blocking(conn, vehicle_id=vehicle_id, start=s, end=s + length, buffer=buffer):
            continue
        plate = conn.execute(
            text("SELECT plate FROM vehicles WHERE id = :v"), {"v": vehicle_id}
        ).scalar_one()
        windows.append(FreeWindow(vehicle_id=vehicle_id, plate=plate, start=s, end=s + length))
        if len(windows) >= limit:
            break
    return windows


def materialize(
    conn: Connection,
    *,
    first_day: date,
    days: int,
    vehicle_ids: list[int] | None = None,
) -> int:
    """Rebuild availability_cache rows (free minutes, first blocking reason) per local day.

    Days are the location's local calendar days, so a day in Sydney and in Denver each has
    its own 24 (or 23/25) hours. Returns the number of rows written.
    """
    if not 1 <= days <= 400:
        raise InvalidInput("days must be between 1 and 400", field="days")
    result = conn.execute(
        query("materialize_availability"),
        {"first_day": first_day, "days": days, "vehicle_ids": vehicle_ids},
    )
    return result.rowcount


def local_day_bounds(day: date, tz_name: str) -> tuple[datetime, datetime]:
    """Return the instants a local calendar day starts and ends at a location."""
    tz = zone(tz_name)
    begin = datetime.combine(day, datetime.min.time(), tzinfo=tz)
    finish = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    return begin, finish
