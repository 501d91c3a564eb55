"""Demo feed files: one realistic file per feed, made from the fleet in the database.

The files look like what the rental, workshop, check-in and transfer systems would send
about this fleet right now: contracts in free future periods of available cars (some in
several versions, one cancelled, exactly one that collides with an existing booking),
workshop jobs, returns of cars that are out, transfers between lots. Times carry the offset
of the lot they happen at. The same fleet, `now` and seed give the same bytes.

With `bad_rows` (the default) each file also holds one row its feed rejects, so the
quarantine has something to show: a contract for a plate not in the fleet, a workshop job
whose start lacks its offset, a return with 120 % fuel, a transfer from a lot to itself.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from db.demo_data import FIRST_NAMES, LAST_NAMES, MAINTENANCE_NOTES
from db.fleet import Location
from db.transfers import distance_km, transfer_duration

# Column order of each written file (the order docs/feeds.md lists the fields in).
COLUMNS: dict[str, tuple[str, ...]] = {
    "contracts": (
        "external_id", "version", "updated_at", "event", "plate", "customer_name",
        "customer_phone", "customer_email", "pickup_location", "return_location", "pickup_at",
        "return_at",
    ),
    "maintenance": (
        "external_id", "version", "updated_at", "event", "plate", "location", "starts_at",
        "ends_at", "description",
    ),
    "returns": (
        "external_id", "version", "returned_at", "plate", "location", "contract_id",
        "odometer_km", "fuel_percent", "damage_notes",
    ),
    "transfers": (
        "external_id", "version", "updated_at", "event", "plate", "from_location",
        "to_location", "departed_at", "eta", "arrived_at",
    ),
}  # fmt: skip
DAMAGE_NOTES = (
    "scratch on the rear bumper, about 10 cm",
    "stone chip in the windscreen, driver side",
    "dent in the passenger door",
    "left mirror housing cracked",
)
Row = dict[str, Any]


@dataclass
class _Block:
    start: datetime  # lower(blocked) = lower(period)
    end: datetime  # upper(blocked): the period plus any prep buffer
    period_end: datetime
    kind: str
    from_id: int
    to_id: int

    @property
    def moves(self) -> bool:
        return self.kind != "hold" and self.from_id != self.to_id


@dataclass
class _Vehicle:
    id: int
    plate: str
    odometer_km: int
    status: str
    location_id: int
    buffer: timedelta
    blocks: list[_Block] = field(default_factory=list)


def write_demo_feeds(
    conn: Connection,
    inbox: Path,
    *,
    seed: int = 7,
    now: datetime | None = None,
    contracts: int = 40,
    returns: int = 8,
    transfers: int = 2,
    fmt: str = "csv",
    bad_rows: bool = True,
) -> list[Path]:
    """Write one demo file per feed into `inbox` and return their paths (contracts first).

    Reads vehicles, their live status and blocks; writes nothing to the database. `contracts`
    is how many contracts (one of them the deliberate collision), `returns` how many rented
    cars come back, `transfers` how many available cars are dispatched; `now` defaults to
    the database's. Files are named like `contracts-2026-11-25T0800.csv` (UTC) and appear
    whole: each is written under a temporary name first. `fmt` is csv or ndjson.
    """
    if fmt not in ("csv", "ndjson"):
        raise ValueError(f"unknown feed format {fmt!r}: csv or ndjson")
    if min(contracts, returns, transfers) < 0:
        raise ValueError("contracts, returns and transfers cannot be negative")
    if now is None:
        now = conn.execute(text("SELECT now()")).scalar_one()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware, e.g. datetime.now(UTC)")
    now = now.replace(second=0, microsecond=0)
    demo = _Demo(conn, random.Random(seed), now, bad_rows)
    # Transfers first: a car that leaves its lot takes no new contract there. The colliding
    # contract's period is claimed next so that nothing else this batch writes overlaps it.
    feeds = {"transfers": demo.transfers(transfers)}
    collision = demo.collision() if contracts else None
    feeds["maintenance"] = demo.maintenance()
    feeds["contracts"] = demo.contracts(contracts, collision)
    feeds["returns"] = demo.returns(returns)
    inbox.mkdir(parents=True, exist_ok=True)
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H%M")
    written = []
    for feed in ("contracts", "maintenance", "returns", "transfers"):
        path = inbox / f"{feed}-{stamp}.{fmt}"
        body = _render(feeds[feed], COLUMNS[feed], fmt)
        partial = inbox / f".{path.name}.part"  # a name no feed detector picks up
        partial.write_bytes(body)
        os.replace(partial, path)
        written.append(path)
    return written


def _render(rows: list[Row], columns: tuple[str, ...], fmt: str) -> bytes:
    if fmt == "ndjson":
        lines = [
            json.dumps({c: row[c] for c in columns if row.get(c) is not None}, ensure_ascii=False)
            for row in rows
        ]
        return "".join(line + "\n" for line in lines).encode()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if row.get(c) is None else row[c] for c in columns] for row in rows])
    return out.getvalue().encode()


# A contract's vehicle, pickup, return and pickup location id.
_Slot = tuple[_Vehicle, datetime, datetime, int]


class _Demo:
    """The fleet as read once, and the periods this batch has already spoken for."""

    def __init__(self, conn: Connection, rng: random.Random, now: datetime, bad: bool) -> None:
        self.conn = conn
        self.rng = rng
        self.now = now
        self.bad = bad
        self.day = f"{now.astimezone(UTC):%y%m%d}"
        self.locations = {
            r.id: Location(**r._mapping)
            for r in conn.execute(
                text(
                    "SELECT id, code, name, address, latitude, longitude, time_zone"
                    " FROM locations ORDER BY id"
                )
            )
        }
        self.vehicles: dict[int, _Vehicle] = {}
        for r in conn.execute(
            text(
                "SELECT v.id, v.plate, v.odometer_km, s.current_status,"
                "       coalesce(s.location_id, v.home_location_id) AS location_id,"
                "       c.prep_buffer"
                " FROM vehicles v JOIN vehicle_categories c ON c.id = v.category_id"
                " JOIN vehicle_status_realtime s ON s.vehicle_id = v.id"
                " WHERE v.active ORDER BY v.id"
            )
        ):
            self.vehicles[r.id] = _Vehicle(
                r.id, r.plate, r.odometer_km, r.current_status, r.location_id, r.prep_buffer
            )
        # Live periods only: what ended before now is already in the live status.
        for r in conn.execute(
            text(
                "SELECT vehicle_id, lower(blocked) AS s, upper(blocked) AS e,"
                "       upper(period) AS pe, kind, start_location_id, end_location_id"
                " FROM blocks WHERE state IN ('active', 'completed') AND upper(blocked) > :now"
                " ORDER BY vehicle_id, lower(blocked)"
            ),
            {"now": now},
        ):
            if r.vehicle_id in self.vehicles:
                self.vehicles[r.vehicle_id].blocks.append(
                    _Block(r.s, r.e, r.pe, r.kind, r.start_location_id, r.end_location_id)
                )
        self.plates = {v.plate for v in self.vehicles.values()}
        self.moved: set[int] = set()  # vehicles this batch sends to another lot

    # -- helpers --

    def available(self) -> list[_Vehicle]:
        return [v for v in self.vehicles.values() if v.status == "available"]

    def is_free(self, v: _Vehicle, start: datetime, end: datetime) -> bool:
        return all(b.end <= start or end <= b.start for b in v.blocks)

    def take(self, v: _Vehicle, start: datetime, end: datetime, to_id: int | None = None) -> None:
        """Remember a period this batch gives the vehicle, so nothing else collides with it."""
        to = v.location_id if to_id is None else to_id
        v.blocks.append(_Block(start, end, end, "feed", self.location_at(v, start), to))

    def location_at(self, v: _Vehicle, at: datetime) -> int:
        """Where the vehicle is at `at`: the end of its last move by then, else where it is."""
        moves = [b for b in v.blocks if b.moves and self.now < b.period_end <= at]
        return max(moves, key=lambda b: b.period_end).to_id if moves else v.location_id

    def local(self, at: datetime, location_id: int) -> str:
        """The time as ISO 8601 in the lot's zone, to the minute: 2026-12-01T10:00+01:00."""
        zone = ZoneInfo(self.locations[location_id].time_zone)
        return at.astimezone(zone).isoformat(timespec="minutes")

    def local_day_at(self, location_id: int, days: int, hour: int, minute: int) -> datetime:
        """A wall-clock time at the lot, `days` after today there."""
        zone = ZoneInfo(self.locations[location_id].time_zone)
        day = self.now.astimezone(zone).date() + timedelta(days=days)
        return datetime.combine(day, clock(hour, minute), zone).astimezone(UTC)

    def code(self, location_id: int) -> str:
        return self.locations[location_id].code

    def before_now(self, at: datetime) -> datetime:
        return min(at, self.now)

    def unknown_plate(self) -> str:
        plate, n = "B QQ 9999", 9999  # Q is never on a demo plate: it reads as a zero
        while plate in self.plates:
            n -= 1
            plate = f"B QQ {n}"
        return plate

    # -- transfers --

    def transfers(self, count: int) -> list[Row]:
        """`count` cars dispatched to the nearest other lot, and arrivals of cars on the road."""
        rows: list[Row] = []
        rng = self.rng
        if len(self.locations) > 1:
            # Cars with the most free time ahead, so the move breaks no booking at home.
            def free_until(v: _Vehicle) -> datetime:
                ahead = [b.start for b in v.blocks if b.start > self.now]
                return min(ahead, default=datetime.max.replace(tzinfo=UTC))

            candidates = sorted(self.available(), key=lambda v: (-free_until(v).timestamp(), v.id))
            for n, v in enumerate(candidates[:count], start=1):
                origin = self.locations[v.location_id]
                others = [x for x in self.locations.values() if x.id != origin.id]
                dest = min(others, key=lambda x: (distance_km(origin, x) or 1e9, x.id))
                departed = self.now - timedelta(minutes=rng.randrange(5, 50, 5))
                eta = departed + transfer_duration(origin, dest)
                if not self.is_free(v, departed, eta):
                    continue
                self.take(v, departed, eta, dest.id)
                v.location_id = dest.id  # it is on its way there now
                self.moved.add(v.id)
                rows.append(
                    {
                        "external_id": f"TX-{self.day}-{n:02d}",
                        "version": 1,
                        "updated_at": self.local(departed + timedelta(minutes=2), origin.id),
                        "event": "dispatched",
                        "plate": v.plate,
                        "from_location": origin.code,
                        "to_location": dest.code,
                        "departed_at": self.local(departed, origin.id),
                        "eta": self.local(eta, dest.id),
                    }
                )
        # Cars on the road whose ETA is close: they arrive (their dispatch came earlier).
        for r in self.conn.execute(
            text(
                "SELECT v.plate, b.id, b.reference, b.start_location_id, b.end_location_id,"
                "       coalesce(b.started_at, lower(b.period)) AS departed, b.scheduled_end"
                " FROM vehicle_status_realtime s JOIN vehicles v ON v.id = s.vehicle_id"
                " JOIN blocks b ON b.id = s.block_id"
                " WHERE s.current_status = 'in_transit' AND b.kind = 'transfer'"
                "   AND b.scheduled_end <= :soon ORDER BY b.scheduled_end, b.id LIMIT 3"
            ),
            {"soon": self.now + timedelta(hours=2)},
        ):
            arrived = r.scheduled_end + timedelta(minutes=rng.randint(-30, 20))
            arrived = self.before_now(max(arrived, r.departed + timedelta(minutes=15)))
            common = {
                "external_id": r.reference or f"TR-{r.id:07d}",
                "plate": r.plate,
                "from_location": self.code(r.start_location_id),
                "to_location": self.code(r.end_location_id),
                "departed_at": self.local(r.departed, r.start_location_id),
                "eta": self.local(r.scheduled_end, r.end_location_id),
            }
            rows.append(
                common
                | {
                    "version": 1,
                    "updated_at": self.local(r.departed, r.start_location_id),
                    "event": "dispatched",
                }
            )
            rows.append(
                common
                | {
                    "version": 2,
                    "updated_at": self.local(arrived, r.end_location_id),
                    "event": "arrived",
                    "arrived_at": self.local(arrived, r.end_location_id),
                }
            )
        if self.bad and rows:
            first = rows[0]
            rows.append(
                first
                | {
                    "external_id": f"TX-{self.day}-99",
                    "to_location": first["from_location"],  # rejected: goes nowhere
                }
            )
        return rows

    # -- maintenance --

    def maintenance(self) -> list[Row]:
        rng = self.rng
        rows: list[Row] = []
        cars = [v for v in self.available() if v.id not in self.moved]
        rng.shuffle(cars)
        n = 0

        def job(v: _Vehicle, start: datetime, hours: int) -> tuple[datetime, datetime] | None:
            end = start + timedelta(hours=hours)
            if not self.is_free(v, start, end):
                return None
            self.take(v, start, end)
            return start, end

        def row(v: _Vehicle, version: int, updated: datetime, event: str, window: tuple) -> Row:
            where = self.location_at(v, window[0])
            return {
                "external_id": f"WS-{self.day}-{n:02d}",
                "version": version,
                "updated_at": self.local(updated, where),
                "event": event,
                "plate": v.plate,
                "location": self.code(where),
                "starts_at": self.local(window[0], where),
                "ends_at": self.local(window[1], where),
                "description": note,
            }

        plans = ["started", "scheduled", "rescheduled", "cancelled"]
        for v in cars:
            if not plans:
                break
            plan = plans[0]
            note = rng.choice(MAINTENANCE_NOTES)
            planned = self.now - timedelta(days=rng.randint(1, 6), minutes=rng.randrange(0, 600, 5))
            if plan == "started":
                start = self.now - timedelta(minutes=rng.randrange(15, 90, 15))
                window = job(v, start, rng.choice((3, 4, 6, 8)))
            else:
                where = self.location_at(v, self.now)
                start = self.local_day_at(where, rng.randint(2, 9), rng.randint(7, 10), 0)
                window = job(v, start, rng.choice((2, 3, 4, 6)))
            if window is None:
                continue
            plans.pop(0)
            n += 1
            rows.append(row(v, 1, planned, "scheduled", window))
            if plan == "started":
                rows.append(row(v, 2, self.before_now(window[0] + timedelta(minutes=4)),
                                "started", window))  # fmt: skip
            elif plan == "rescheduled":
                # Moved to the first later day the car is free, and given more time.
                moves = (job(v, window[0] + timedelta(days=d), 4) for d in (1, 2, 3, 7, 14))
                later = next((w for w in moves if w is not None), None)
                if later is not None:
                    rows.append(row(v, 2, self.now - timedelta(hours=2), "scheduled", later))
            elif plan == "cancelled":
                rows.append(row(v, 2, self.now - timedelta(hours=1), "cancelled", window))
        if self.bad and rows:
            bad = dict(rows[-1], external_id=f"WS-{self.day}-99", version=1, event="scheduled")
            bad["starts_at"] = bad["starts_at"][:16]  # rejected: the offset is cut off
            rows.append(bad)
        return rows

    # -- contracts --

    def contracts(
        self, count: int, collide: tuple[_Vehicle, datetime, datetime, int] | None
    ) -> list[Row]:
        """`count` contracts, the last one `collide` (from `collision`) when there is one."""
        rng = self.rng
        customers = [
            (r.name, r.phone, r.email)
            for r in self.conn.execute(text("SELECT name, phone, email FROM customers ORDER BY id"))
        ]
        cars = [v for v in self.available() if v.id not in self.moved]
        contracts: list[list[Row]] = []
        plain = count - (collide is not None)
        # One of each story however few contracts are asked for, then mostly plain bookings.
        plans = ["extended", "modified", "cancelled"][:plain]
        plans += [
            rng.choice(("created",) * 6 + ("extended", "modified"))
            for _ in range(plain - len(plans))
        ]
        rng.shuffle(plans)
        for n in range(1, count + 1):
            if n > plain and collide is not None:
                v, pickup, ret, where = collide
                plan = "created"
            else:
                plan = plans[n - 1]
                found = self.contract_slot(cars, plan)
                if found is None:
                    continue
                v, pickup, ret, where = found
            if customers and rng.random() < 0.7:
                name, phone, email = rng.choice(customers)
            else:
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                name, phone, email = f"{first} {last}", None, None
            first_seen = self.now - timedelta(hours=rng.randint(2, 96), minutes=rng.randrange(60))
            base = {
                "external_id": f"CT-{self.day}-{n:03d}",
                "version": 1,
                "updated_at": self.local(first_seen, where),
                "event": "created",
                "plate": v.plate,
                "customer_name": name,
                "customer_phone": phone,
                "customer_email": email,
                "pickup_location": self.code(where),
                "return_location": self.code(where),
                "pickup_at": self.local(pickup, where),
                "return_at": self.local(ret, where),
            }
            versions = [base]
            changed = self.before_now(first_seen + timedelta(minutes=rng.randint(30, 600)))
            later = {"version": 2, "updated_at": self.local(changed, where)}
            if plan == "extended":
                versions.append(base | later | {"event": "extended",
                                                 "return_at": self.local(ret + timedelta(days=1),
                                                                         where)})  # fmt: skip
            elif plan == "modified":
                versions.append(base | later | {
                    "event": "modified",
                    "pickup_at": self.local(pickup + timedelta(hours=2), where),
                    "return_at": self.local(ret + timedelta(hours=2), where),
                })  # fmt: skip
            elif plan == "cancelled":
                versions.append(base | later | {"event": "cancelled"})
            contracts.append(versions)
        rows = sorted(
            (row for versions in contracts for row in versions),
            key=lambda r: (datetime.fromisoformat(r["updated_at"]), r["external_id"]),
        )
        if self.bad and rows:
            rows.append(dict(rows[0], external_id=f"CT-{self.day}-999", plate=self.unknown_plate()))
        return rows

    def contract_slot(self, cars: list[_Vehicle], plan: str) -> _Slot | None:
        """A free future period of an available car, with room for the plan's later version."""
        rng = self.rng
        for _ in range(200):
            if not cars:
                return None
            v = rng.choice(cars)
            zone_of = v.location_id
            pickup = self.local_day_at(zone_of, rng.randint(1, 21), rng.randint(8, 18),
                                       rng.choice((0, 15, 30, 45)))  # fmt: skip
            days = rng.choice((1, 1, 2, 2, 3, 3, 4, 5, 7, 10))
            ret = pickup + timedelta(days=days, hours=rng.choice((-2, -1, 0, 0, 0, 1, 2, 3)))
            # The latest version reaches furthest: extended by a day, modified by two hours.
            reach = ret + {"extended": timedelta(days=1), "modified": timedelta(hours=2)}.get(
                plan, timedelta(0)
            )
            if not self.is_free(v, pickup, reach + v.buffer):
                continue
            where = self.location_at(v, pickup)
            self.take(v, pickup, reach + v.buffer)
            return v, pickup, ret, where
        return None

    def collision(self) -> _Slot | None:
        """A contract period overlapping a future reservation: the one deliberate collision."""
        booked = [
            (v, b)
            for v in self.vehicles.values()
            if v.id not in self.moved
            for b in v.blocks
            if b.kind == "reservation" and b.start > self.now + timedelta(days=1)
        ]
        if not booked:
            return None
        v, b = self.rng.choice(booked)
        # The classic double booking: same car, same pickup time, another customer.
        pickup, ret = b.start, b.start + timedelta(days=1)
        self.take(v, pickup, ret + v.buffer)
        return v, pickup, ret, b.from_id

    # -- returns --

    def returns(self, count: int) -> list[Row]:
        rng = self.rng
        out = self.conn.execute(
            text(
                "SELECT v.id, b.end_location_id, coalesce(b.started_at, lower(b.period)) AS start,"
                "       c.external_id AS contract_id"
                " FROM vehicle_status_realtime s JOIN vehicles v ON v.id = s.vehicle_id"
                " JOIN blocks b ON b.id = s.block_id AND b.kind = 'rental' AND b.state = 'active'"
                " LEFT JOIN contracts c ON c.block_id = b.id"
                " WHERE s.current_status = 'rented'"
                " ORDER BY abs(extract(epoch FROM s.expected_available_at - :now)), v.id"
                " LIMIT :n"
            ),
            {"now": self.now, "n": count},
        ).all()
        damaged = rng.randrange(len(out)) if out else -1
        rows: list[Row] = []
        for n, r in enumerate(out, start=1):
            v = self.vehicles[r.id]
            returned = self.now - timedelta(minutes=rng.randint(3, 120))
            returned = max(returned, min(r.start + timedelta(minutes=30), self.now))
            days = max(1, (returned - r.start).days)
            rows.append(
                {
                    "external_id": f"RT-{self.day}-{n:03d}",
                    "version": 1,
                    "returned_at": self.local(returned, r.end_location_id),
                    "plate": v.plate,
                    "location": self.code(r.end_location_id),
                    "contract_id": r.contract_id,
                    "odometer_km": v.odometer_km + days * rng.randint(40, 350),
                    "fuel_percent": rng.randrange(10, 101, 5),
                    "damage_notes": rng.choice(DAMAGE_NOTES) if n - 1 == damaged else None,
                }
            )
        if self.bad and rows:
            rows.append(dict(rows[0], external_id=f"RT-{self.day}-999", fuel_percent=120))
        return rows
