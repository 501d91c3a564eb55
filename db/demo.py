"""Demo data: a deterministic, realistic fleet with history, live rentals and seeded conflicts."""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import Connection, text

from db.auth import hash_password
from db.demo_data import (
    CATEGORIES,
    CITIES,
    COLOURS,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    LICENCES,
    MAINTENANCE_MINUTES,
    MAINTENANCE_NOTES,
    PARTNER_KM,
    PHONES,
    RENTAL_DAYS,
    RETURN_SHIFT,
    WMI,
    CategorySpec,
    City,
)
from db.errors import InvalidInput
from db.events import to_json
from db.fleet import PLATE_RE, Location, system_user_id
from db.timeutil import require_aware
from db.transfers import distance_km, transfer_duration

Progress = Callable[[str, int, int], None]

# One sign-in per role for trying the server; published on purpose (`fleet demo-logins`).
DEMO_LOGINS: tuple[tuple[str, str, str], ...] = (
    ("demo-agent", "agent", "demo-agent-pass"),
    ("demo-manager", "manager", "demo-manager-pass"),
    ("demo-analyst", "analyst", "demo-analyst-pass"),
    ("demo-admin", "admin", "demo-admin-pass"),
)


class DemoSummary(BaseModel):
    """What load_demo wrote."""

    locations: int
    categories: int
    users: int
    customers: int
    vehicles: int
    blocks: int
    overdue: int
    in_transit: int
    conflicts_seeded: int


# --- reference data ---------------------------------------------------------------------------


LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # no I, O, Q: read as digits on dirty plates
VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
_VIN_VALUE = {c: i for i, c in enumerate("0123456789", 0)} | dict(
    zip("ABCDEFGHJKLMNPRSTUVWXYZ", (1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7,
                                    8, 9), strict=True)
)  # fmt: skip
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_VIN_YEARS = "ABCDEFGHJKLMNPRSTVWXY123456789"  # 2010, 2011, ... (no I, O, Q, U, Z, 0)

# What each vehicle is doing at `now`.
IDLE, CLEANING, RENTED, OVERDUE, MAINTENANCE, IN_TRANSIT = range(6)
DAY = 1440  # minutes
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The status history reaches this far back at least, past the 90 days PostgreSQL keeps
# (FLEET_HISTORY_RETENTION_DAYS): the archive job has months to move on its first run, and
# analysts' queries (docs/analytics.md) span archive and live rows from the start.
HISTORY_DAYS = 150
# Before the booking window the demo's past is a quieter season: blocks this much sparser.
QUIET = 3
# The car docs/analytics.md's dispute example asks about: a Berlin car an agent sent to the
# workshop by mistake about 110 days ago, rolled back by the lot's manager.
DISPUTED_PLATE = "B QX 4711"
DISPUTE_DAYS_AGO = (110, 104, 116, 98, 122)
NULL = "\\N"  # COPY text format
_BLOCK_COLUMNS = (
    "id, vehicle_id, category_id, kind, state, period, blocked, scheduled_end, start_location_id,"
    " end_location_id, customer_id, reference, started_at, finished_at, created_by, created_at,"
    " updated_at, notes"
)
_REFERENCE = {"rental": "RNT", "reservation": "RNT", "maintenance": "WO", "transfer": "TR"}
_TABLES = (
    "locations", "vehicle_categories", "users", "customers", "vehicles", "blocks",
    "vehicle_status_realtime", "vehicle_status_log", "availability_events",
)  # fmt: skip


def fill(template: str, rng: random.Random) -> str:
    """Return the template with each L replaced by a letter and each D by a digit."""
    return "".join(
        rng.choice(LETTERS) if c == "L" else str(rng.randrange(10)) if c == "D" else c
        for c in template
    )


def vin_check_digit(vin: str) -> str:
    """Return the ISO 3779 check digit (position 9) for a 17-character VIN."""
    total = sum(_VIN_VALUE[c] * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True))
    return "X" if total % 11 == 10 else str(total % 11)


def _ascii(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name.replace("ı", "i"))
    return "".join(c for c in folded.lower() if c.isascii() and (c.isalnum() or c in "._-"))


# --- the loader -------------------------------------------------------------------------------


def load_demo(
    conn: Connection,
    *,
    vehicles: int,
    locations: int,
    seed: int,
    now: datetime | None = None,
    blocks_per_vehicle: int | None = None,
    progress: Progress | None = None,
) -> DemoSummary:
    """Fill an empty fleet with deterministic demo data, bulk-loaded with COPY; never commits.

    The same seed gives the same fleet; times are laid out relative to `now` (default: the
    database's now, to the hour). Blocks default to about 8 per vehicle over the past 60 and
    next 30 days, with a few sparser ones back to 150 days ago; more blocks spread over up to
    a year. Every past block leaves its status changes in the log (and their events), as the
    counter and the feeds would have written them.
    """
    if vehicles < 1 or locations < 1:
        raise InvalidInput("need at least one vehicle and one location", field="vehicles")
    if blocks_per_vehicle is not None and blocks_per_vehicle < 0:
        raise InvalidInput("blocks_per_vehicle cannot be negative", field="blocks_per_vehicle")
    if conn.execute(text("SELECT EXISTS (SELECT 1 FROM vehicles)")).scalar_one():
        raise InvalidInput(
            "database already has vehicles", hint="use --if-empty or a fresh database"
        )
    if now is None:
        now = conn.execute(text("SELECT date_trunc('hour', now(), 'UTC')")).scalar_one()
    require_aware(now, "now")
    return _Loader(
        conn,
        rng=random.Random(seed),
        seed=seed,
        now=now,
        n_vehicles=vehicles,
        n_locations=locations,
        blocks_per_vehicle=8 if blocks_per_vehicle is None else blocks_per_vehicle,
        progress=progress or (lambda stage, done, total: None),
    ).run()


class _Loader:
    def __init__(
        self,
        conn: Connection,
        *,
        rng: random.Random,
        seed: int,
        now: datetime,
        n_vehicles: int,
        n_locations: int,
        blocks_per_vehicle: int,
        progress: Progress,
    ) -> None:
        self.conn = conn
        self.rng = rng
        self.seed = seed
        self.now_dt = now
        self.now = int((now - EPOCH).total_seconds() // 60)
        self.n_vehicles = n_vehicles
        self.n_locations = n_locations
        self.bpv = blocks_per_vehicle
        self.progress = progress
        self.raw = conn.connection.dbapi_connection
        self._ts: dict[int, str] = {}
        self.counts = dict.fromkeys(("blocks", "overdue", "in_transit", "conflicts"), 0)
        # About 8 blocks over 90 days; more blocks stretch the window to at most a year.
        span_days = 90 if self.bpv <= 8 else min(365, round(self.bpv * 90 / 8))
        past_days = span_days * 2 // 3
        self.win_start = self.now - past_days * DAY
        self.history_start = min(self.win_start, self.now - HISTORY_DAYS * DAY)
        # Its own stream, so the history's details leave the blocks as each seed made them.
        self.hrng = random.Random(seed * 7919 + 1)
        self.win_end = self.now + (span_days - past_days) * DAY
        mean_rental = sum(d * DAY if d else 360 for d in RENTAL_DAYS) / len(RENTAL_DAYS)
        mean_maintenance = sum(MAINTENANCE_MINUTES) / len(MAINTENANCE_MINUTES)
        occupied = 0.84 * (mean_rental + 50) + 0.08 * mean_maintenance + 0.08 * 400
        cycle = span_days * DAY / max(self.bpv, 1)
        # Waiting for opening hours costs about half a day per block on top of the idle gap.
        self.gap = cycle - occupied - 600
        self.scale = 1.0  # shrinks rentals when many blocks must fit the window
        if self.gap < 240:
            self.scale = max(0.1, (cycle - 840) / occupied)
            self.gap = 240

    # -- plumbing --

    def ts(self, minute: int) -> str:
        """Return the COPY text for a time given in minutes since the epoch (cached)."""
        s = self._ts.get(minute)
        if s is None:
            s = (EPOCH + timedelta(minutes=minute)).strftime("%Y-%m-%d %H:%M:00+00")
            self._ts[minute] = s
        return s

    def next_ids(self, table: str) -> int:
        """Return the last id in use for table: explicit ids follow it (setval comes later)."""
        return self.conn.execute(
            text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) - 1"), {"t": table}
        ).scalar_one()

    def copy_rows(self, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        """COPY rows into table; table and columns come from this module, never from input."""
        with self.raw.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)

    def set_sequence(self, table: str, last_id: int) -> None:
        self.conn.execute(
            text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :v, false)"),
            {"t": table, "v": last_id + 1},
        )

    # -- reference data --

    def run(self) -> DemoSummary:
        system_id = system_user_id(self.conn)
        self.system_id = system_id
        self.load_locations()
        self.load_categories()
        n_users = self.load_users() + 1
        self.load_customers()
        self.load_vehicles()
        self.load_timelines(system_id)
        summary = DemoSummary(
            locations=len(self.locs),
            categories=len(self.cats),
            users=n_users,
            customers=self.n_customers,
            vehicles=self.n_vehicles,
            blocks=self.counts["blocks"],
            overdue=self.counts["overdue"],
            in_transit=self.counts["in_transit"],
            conflicts_seeded=self.counts["conflicts"],
        )
        self.conn.execute(
            text(
                "INSERT INTO availability_events (kind, actor_id, payload)"
                " VALUES ('demo_loaded', :by, CAST(:payload AS jsonb))"
            ),
            {
                "by": system_id,
                "payload": to_json({**summary.model_dump(), "seed": self.seed, "now": self.now_dt}),
            },
        )
        self.progress("analyze", 0, 1)
        # The planner must see the new rows before anyone searches them.
        self.conn.execute(text("ANALYZE " + ", ".join(_TABLES)))
        self.progress("analyze", 1, 1)
        return summary

    def load_locations(self) -> None:
        taken = set(self.conn.execute(text("SELECT code FROM locations")).scalars())
        base = self.next_ids("locations")
        self.locs: list[Location] = []
        self.cities: list[City] = []  # the city of each location, by index
        round_ = 1
        while len(self.locs) < self.n_locations:
            for city in CITIES:
                if len(self.locs) == self.n_locations:
                    break
                code = f"{city.code}{round_}"
                if code in taken:
                    continue
                if round_ == 1:
                    name, address, lat, lon = city.airport
                elif round_ == 2:
                    name, address, lat, lon = city.downtown
                else:  # suburban branches around downtown, spread on a small circle
                    _, _, lat, lon = city.downtown
                    name = address = f"{city.city} Branch {round_}"
                    lat += 0.05 * ((round_ * 7) % 11 - 5) / 5
                    lon += 0.07 * ((round_ * 5) % 13 - 6) / 6
                self.locs.append(
                    Location(id=base + len(self.locs) + 1, code=code, name=name,
                             address=address, latitude=round(lat, 4),
                             longitude=round(lon, 4), time_zone=city.tz)
                )  # fmt: skip
                self.cities.append(city)
            round_ += 1
        self.copy_rows(
            "locations",
            "id, code, name, address, latitude, longitude, time_zone",
            [(x.id, x.code, x.name, x.address, x.latitude, x.longitude, x.time_zone)
             for x in self.locs],
        )  # fmt: skip
        self.set_sequence("locations", self.locs[-1].id)
        n = len(self.locs)
        self.offsets = [
            int(self.now_dt.astimezone(ZoneInfo(x.time_zone)).utcoffset().total_seconds()) // 60
            for x in self.locs
        ]
        self.partners: list[list[int]] = [[] for _ in range(n)]
        self.travel: dict[tuple[int, int], int] = {}
        for i in range(n):
            for j in range(n):
                km = distance_km(self.locs[i], self.locs[j]) if i != j else None
                if km is not None and km <= PARTNER_KM:
                    self.partners[i].append(j)
                    minutes = transfer_duration(self.locs[i], self.locs[j]).total_seconds() // 60
                    self.travel[i, j] = int(minutes)
        self.progress("locations", n, n)

    def load_categories(self) -> None:
        taken = set(self.conn.execute(text("SELECT code FROM vehicle_categories")).scalars())
        rank0 = self.conn.execute(
            text("SELECT coalesce(max(upgrade_rank), 0) FROM vehicle_categories")
        ).scalar_one()
        base = self.next_ids("vehicle_categories")
        self.cats: list[tuple[int, CategorySpec]] = []
        rows = []
        for spec in CATEGORIES:
            code = spec.code
            while code in taken:  # keep existing categories; the demo adds its own
                code += "2"
            cid = base + len(self.cats) + 1
            self.cats.append((cid, spec))
            rows.append((
                cid, code, spec.name, timedelta(minutes=spec.prep_minutes), Decimal(spec.hourly),
                Decimal(spec.daily), timedelta(minutes=spec.grace_minutes),
                rank0 + 10 * len(self.cats), spec.seats,
            ))  # fmt: skip
        self.copy_rows(
            "vehicle_categories",
            "id, code, name, prep_buffer, hourly_rate, daily_rate, grace_period, upgrade_rank,"
            " seats",
            rows,
        )
        self.set_sequence("vehicle_categories", self.cats[-1][0])
        self.progress("categories", len(rows), len(rows))

    def person(self) -> tuple[str, str]:
        return self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)

    def load_users(self) -> int:
        existing = set(self.conn.execute(text("SELECT username FROM users")).scalars())
        taken = existing | {username for username, _, _ in DEMO_LOGINS}
        base = self.next_ids("users")
        rows: list[tuple[Any, ...]] = []
        # Per location: the manager first, then its agents (who create the bookings).
        self.staff: list[list[int]] = []
        for loc in self.locs:
            ids = []
            for role in ("manager", "agent", "agent"):
                first, last = self.person()
                stem = f"{_ascii(first)}.{_ascii(last)}"[:34]
                username, n = stem, 1
                while username in taken:
                    n += 1
                    username = f"{stem}{n}"
                taken.add(username)
                uid = base + len(rows) + 1
                rows.append((uid, username, f"{first} {last}", role, loc.id, None))
                ids.append(uid)
            self.staff.append(ids)
        # After the generated staff, so their ids and names do not depend on the logins;
        # argon2 salts are random, the only part of the demo that differs between loads.
        for username, role, password in DEMO_LOGINS:
            if username not in existing:
                rows.append((
                    base + len(rows) + 1, username, f"Demo {role.title()}", role,
                    self.locs[0].id, hash_password(password),
                ))  # fmt: skip
        self.copy_rows(
            "users", "id, username, full_name, role, home_location_id, password_hash", rows
        )
        self.set_sequence("users", rows[-1][0])
        self.progress("users", len(rows), len(rows))
        return len(rows)

    def load_customers(self) -> None:
        rng = self.rng
        self.n_customers = max(50, self.n_vehicles // 2)
        self.customer_base = self.next_ids("customers")
        countries = sorted({c.country for c in self.cities})
        rows = []
        for i in range(self.n_customers):
            first, last = self.person()
            country = rng.choice(countries)
            email = (
                f"{_ascii(first)}.{_ascii(last)}{rng.randrange(100)}@{rng.choice(EMAIL_DOMAINS)}"
            )
            rows.append((
                self.customer_base + i + 1, f"{first} {last}", fill(PHONES[country], rng),
                email if rng.random() < 0.95 else None, fill(LICENCES[country], rng),
            ))  # fmt: skip
        self.copy_rows("customers", "id, name, phone, email, licence_number", rows)
        self.set_sequence("customers", self.customer_base + self.n_customers)
        self.progress("customers", self.n_customers, self.n_customers)

    def load_vehicles(self) -> None:
        rng = self.rng
        base = self.next_ids("vehicles")
        year_now = self.now_dt.year
        cat_pick = [i for i, (_, spec) in enumerate(self.cats) for _ in range(spec.share)]
        colours = [name for name, weight in COLOURS for _ in range(weight)]
        # Airport lots hold more cars than downtown branches.
        home_pick = [
            i for i, x in enumerate(self.locs) for _ in range(3 if x.code[3:] == "1" else 2)
        ]
        ages = (0,) * 15 + (1,) * 30 + (2,) * 28 + (3,) * 17 + (4,) * 7 + (5,) * 3
        plates: set[str] = set()
        vins: set[str] = set()
        self.story_vehicle: int | None = None
        # (vehicle id, category index, home location index, registered at)
        self.fleet: list[tuple[int, int, int, int]] = []
        rows = []
        total = self.n_vehicles
        for n in range(total):
            ci = rng.choice(cat_pick)
            li = rng.choice(home_pick)
            spec = self.cats[ci][1]
            make, model = rng.choice(spec.models)
            year = year_now - rng.choice(ages)
            plate = fill(self.cities[li].plate, rng)
            while plate in plates or not PLATE_RE.match(plate):
                plate = fill(self.cities[li].plate, rng)
            if self.cities[li].code == "BER" and DISPUTED_PLATE not in plates:
                # Generated plates never hold a Q (read as an O); this one is the story car's.
                plate = DISPUTED_PLATE
                self.story_vehicle = base + n + 1
            plates.add(plate)
            vin = self.make_vin(make, year)
            while vin in vins:
                vin = self.make_vin(make, year)
            vins.add(vin)
            features = {f for f, p in spec.features.items() if rng.random() < p}
            if self.cities[li].country in ("US", "CA", "AU"):
                features.add("automatic")  # manual cars are hard to rent out there
            odometer = (year_now - year) * rng.randint(18_000, 40_000) + rng.randint(500, 15_000)
            vid = base + n + 1
            # Registered before its first booking could have been made.
            created = self.history_start - 60 * DAY - rng.randrange(300 * DAY)
            self.fleet.append((vid, ci, li, created))
            rows.append((
                vid, plate, vin, make, model, year, rng.choice(colours), self.cats[ci][0],
                "{" + ",".join(sorted(features)) + "}", self.locs[li].id, odometer,
                self.ts(created),
            ))  # fmt: skip
            if len(rows) == 20_000 or n == total - 1:
                self.copy_rows(
                    "vehicles",
                    "id, plate, vin, make, model, year, colour, category_id, features,"
                    " home_location_id, odometer_km, created_at",
                    rows,
                )
                rows = []
                self.progress("vehicles", n + 1, total)
        self.set_sequence("vehicles", base + total)

    def make_vin(self, make: str, year: int) -> str:
        rng = self.rng
        body = (
            WMI[make]
            + "".join(rng.choice(VIN_CHARS) for _ in range(5))
            + "0"
            + _VIN_YEARS[(year - 2010) % 30]
            + rng.choice(VIN_CHARS)
            + f"{rng.randrange(1_000_000):06d}"
        )
        return body[:8] + vin_check_digit(body) + body[9:]

    # -- timelines --

    def assign_roles(self) -> tuple[list[int], list[bool], list[bool]]:
        """Decide what each vehicle is doing now, and which carry a seeded conflict."""
        rng = self.rng
        n = self.n_vehicles
        order = list(range(n))
        rng.shuffle(order)
        roles = [IDLE] * n
        if self.bpv == 0:
            return roles, [False] * n, [False] * n
        few = max(1, n // 100)
        # A transfer needs a neighbouring lot; vehicles only ever move between neighbours.
        for k in [k for k in order if self.partners[self.fleet[k][2]]][:few]:
            roles[k] = IN_TRANSIT
        rest = [k for k in order if roles[k] == IDLE]
        wanted = ((OVERDUE, few), (MAINTENANCE, round(n * 0.03)), (CLEANING, round(n * 0.04)),
                  (RENTED, round(n * 0.38)))  # fmt: skip
        at = 0
        for role, count in wanted:
            for k in rest[at : at + count]:
                roles[k] = role
            at += count
        overdue = [k for k in order if roles[k] == OVERDUE]
        soon = [False] * n
        for k in overdue[: max(1, len(overdue) // 2)]:
            soon[k] = True
        wrong = [False] * n
        if len(self.locs) > 1:
            calm = [k for k in order if roles[k] in (IDLE, RENTED)]
            for k in rng.sample(calm, min(len(calm), max(1, n // 200))):
                wrong[k] = True
        return roles, soon, wrong

    def load_timelines(self, system_id: int) -> None:
        roles, soon, wrong = self.assign_roles()
        self.block_id = self.next_ids("blocks")
        first_block = self.block_id
        statuses = []
        self.histories: list[list[tuple[Any, ...]]] = []
        lines: list[str] = []
        total = self.n_vehicles
        step = max(1, min(5_000, total // 50))
        with (
            self.raw.cursor() as cur,
            cur.copy(f"COPY blocks ({_BLOCK_COLUMNS}) FROM STDIN") as cp,
        ):
            for k, vehicle in enumerate(self.fleet):
                self.vlog: list[tuple[Any, ...]] = []
                statuses.append(self.timeline(vehicle, roles[k], soon[k], wrong[k], lines))
                self.histories.append(self.vlog)
                if len(lines) >= 20_000:
                    cp.write("".join(lines))
                    lines.clear()
                if (k + 1) % step == 0 or k + 1 == total:
                    self.progress("blocks", k + 1, total)
            cp.write("".join(lines))
        self.counts["blocks"] = self.block_id - first_block
        self.set_sequence("blocks", self.block_id)
        self.load_statuses(statuses, system_id)

    def load_statuses(self, statuses: list[tuple[Any, ...]], system_id: int) -> None:
        ts, loc_ids = self.ts, [x.id for x in self.locs]
        codes = [x.code for x in self.locs]
        realtime, log, events = [], [], []
        log_id = self.next_ids("vehicle_status_log")
        seed = {"demo_seed": self.seed}
        for n, (vid, status, li, dest, cust, block, expected, since) in enumerate(statuses):
            category = self.cats[self.fleet[n][1]][0]
            changes = self.histories[n]
            if vid == self.story_vehicle:
                self.add_dispute(changes, self.fleet[n][2])
            # The log ends where the live row stands: same status, place and time.
            last = changes[-1]
            assert (last[0], last[1], last[2]) == (since, status, li), (vid, last, status)
            old: dict[str, Any] | None = None
            for version, change in enumerate(changes, 1):
                at, new_status, cli, cdest, ccust, cblock, cexp, by, reason, meta, reverts = change
                log_id += 1
                state = {
                    "status": new_status, "location_id": loc_ids[cli],
                    "destination_location_id": None if cdest is None else loc_ids[cdest],
                    "customer_id": ccust, "block_id": cblock,
                    "expected_available_at": None if cexp is None else self.iso(cexp),
                }  # fmt: skip
                metadata = {**meta, **seed}
                reverts_id = None
                if reverts == "previous":
                    reverts_id = log_id - 1
                    metadata["reverts"] = reverts_id
                    reason = f"rollback of #{reverts_id}: {reason}"[:200]
                source = "system" if by == system_id else "staff"
                log.append((
                    log_id, vid, None if old is None else old["status"], new_status,
                    None if old is None else old["location_id"], state["location_id"],
                    None if old is None else to_json(old), to_json(state), version, by, reason,
                    source, to_json(metadata), reverts_id, ts(at),
                ))  # fmt: skip
                payload = {
                    "log_id": log_id, "old_status": None if old is None else old["status"],
                    "reason": reason, "source": source, "vehicle_id": vid, "version": version,
                    "location_code": codes[cli], **state,
                }  # fmt: skip
                events.append(("status_changed", vid, state["location_id"], by,
                               to_json(payload), ts(at)))  # fmt: skip
                old = state
            loc = loc_ids[li]
            dest_id = None if dest is None else loc_ids[dest]
            realtime.append(
                (
                    vid,
                    category,
                    status,
                    loc,
                    dest_id,
                    cust,
                    block,
                    None if expected is None else ts(expected),
                    len(changes),
                    ts(since),
                    system_id,
                )
            )
        self.copy_rows(
            "vehicle_status_realtime",
            "vehicle_id, category_id, current_status, location_id, destination_location_id,"
            " current_customer_id, block_id, expected_available_at, version, last_updated,"
            " updated_by",
            realtime,
        )
        self.progress("status", len(realtime), len(realtime))
        self.copy_rows(
            "vehicle_status_log",
            "id, vehicle_id, old_status, new_status, old_location_id, new_location_id, old_state,"
            " new_state, version, changed_by, change_reason, source, metadata, reverts_log_id,"
            " changed_at",
            log,
        )
        self.set_sequence("vehicle_status_log", log_id)
        self.progress("status log", len(log), len(log))
        # In time order, so ids (and the commit's seq numbers) follow the history as it went.
        events.sort(key=lambda e: e[5])
        self.copy_rows(
            "availability_events",
            "kind, vehicle_id, location_id, actor_id, payload, created_at",
            events,
        )
        self.progress("events", len(events), len(events))

    def align(self, t: int, li: int, first_hour: int, last_hour: int) -> int:
        """Return the first time at or after t that is a plausible local hour at location li."""
        off = self.offsets[li]
        start = ((t + off) // DAY) * DAY - off + self.rng.randint(first_hour, last_hour) * 60 \
            + self.rng.choice((0, 0, 15, 30, 30, 45))  # fmt: skip
        return start if start >= t else start + DAY

    def rental_minutes(self, at_least_a_day: bool = False) -> int:
        rng = self.rng
        days = rng.choice(RENTAL_DAYS)
        while at_least_a_day and days == 0:
            days = rng.choice(RENTAL_DAYS)
        minutes = rng.randint(3, 9) * 60 if days == 0 else days * DAY + rng.choice(RETURN_SHIFT)
        if self.scale < 1.0:
            minutes = max(60, int(minutes * self.scale) // 15 * 15)
        return minutes

    def elapsed(self, length: int) -> int:
        """Return how long ago a block of this length began if it is still under way now.

        It still has two hours to run where it can: `now` is the hour the clock is in, and
        the demo should not show cars late that were not late when it was loaded.
        """
        return self.rng.randrange(15, max(16, length - 120), 15)

    def pick(self, pos: int, home: int) -> tuple[str, int]:
        """Choose the next block's kind and where it ends."""
        rng = self.rng
        r = rng.random()
        partners = self.partners[pos]
        if r < 0.05:
            return "maintenance", pos
        # Cars that drifted away on one-way rentals are brought home now and then.
        if partners and (r < 0.08 or (pos != home and r < 0.25)):
            dest = home if pos != home and home in partners else rng.choice(partners)
            return "transfer", dest
        if partners and rng.random() < 0.10:
            return "rental", rng.choice(partners)
        return "rental", pos

    def place(self, kind: str, pos: int, dest: int, t: int) -> tuple[int, int]:
        """Return the scheduled [start, end) of a block of this kind starting after t."""
        rng = self.rng
        if kind == "rental":
            start = self.align(t, pos, 7, 20)
            return start, start + self.rental_minutes()
        if kind == "maintenance":
            start = self.align(t, pos, 7, 10)
            return start, start + rng.choice(MAINTENANCE_MINUTES)
        start = self.align(t, pos, 6, 15)
        return start, start + self.travel[pos, dest]

    def actual_end(self, kind: str, start: int, end: int, grace: int) -> int:
        """Return when a finished block really ended: some returns are early, some late."""
        rng = self.rng
        r = rng.random()
        if kind == "rental":
            if r < 0.50:
                deviation = -rng.randrange(0, 46)
            elif r < 0.65:  # brought back early
                deviation = -rng.randrange(60, max(75, (end - start) // 2), 15)
            elif r < 0.88:
                deviation = rng.randint(1, grace)
            else:  # late, past the grace period
                deviation = rng.randrange(grace + 1, 601)
        elif kind == "maintenance":
            deviation = 0 if r < 0.7 else rng.choice((-60, 60, 120, 240))
        else:
            deviation = rng.randrange(-20, 46)
        return max(start + 30, end + deviation)

    def emit(
        self,
        out: list[str],
        vid: int,
        kind: str,
        state: str,
        start: int,
        end: int,
        blocked_end: int,
        scheduled_end: int,
        from_li: int,
        to_li: int,
        customer: int | None,
        started: int | None,
        finished: int | None,
        created: int,
        notes: str = "",
    ) -> int:
        """Append one block as a COPY text line and return its id."""
        self.block_id += 1
        bid = self.block_id
        ts = self.ts
        category = self.category_id
        # Agents take bookings; the lot's manager plans maintenance and transfers.
        by = self.staff[from_li][1 + (bid & 1) if kind in ("rental", "reservation") else 0]
        updated = finished or started or created
        out.append(
            f"{bid}\t{vid}\t{category}\t{kind}\t{state}\t"
            f'["{ts(start)}","{ts(end)}")\t["{ts(start)}","{ts(blocked_end)}")\t'
            f"{ts(scheduled_end)}\t{self.locs[from_li].id}\t{self.locs[to_li].id}\t"
            f"{customer if customer else NULL}\t{_REFERENCE[kind]}-{bid:07d}\t"
            f"{ts(started) if started else NULL}\t{ts(finished) if finished else NULL}\t"
            f"{by}\t{ts(created)}\t{ts(updated)}\t{notes}\n"
        )
        return bid

    def customer(self) -> int:
        self.last_customer = self.customer_base + 1 + self.rng.randrange(self.n_customers)
        return self.last_customer

    # -- status history --

    def iso(self, minute: int) -> str:
        return (EPOCH + timedelta(minutes=minute)).isoformat()

    def log(
        self,
        at: int,
        status: str,
        li: int,
        *,
        by: int,
        reason: str,
        dest: int | None = None,
        customer: int | None = None,
        block: int | None = None,
        expected: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Record one status change of the vehicle whose timeline is being written."""
        self.vlog.append((at, status, li, dest, customer, block, expected, by, reason,
                          metadata or {}, None))  # fmt: skip

    def log_past(
        self,
        kind: str,
        bid: int,
        pos: int,
        dest: int,
        customer: int | None,
        started: int,
        scheduled_end: int,
        finished: int,
        blocked_end: int,
        notes: str,
    ) -> None:
        """Record the status changes a finished block made, as staff and jobs made them."""
        manager, agents = self.staff[pos][0], self.staff[pos][1:]
        if kind == "rental":
            agent = agents[bid & 1]
            self.log(started, "rented", pos, customer=customer, block=bid,
                     expected=scheduled_end, by=agent,
                     reason=f"rental #{bid} picked up")  # fmt: skip
            # The check-in is entered a little after the car is back; the change keeps the
            # return's own time (`returned_at`), as returns from the feed do.
            buffer = blocked_end - finished
            entered = finished + self.hrng.randrange(0, max(5, min(45, buffer - 5)), 5)
            self.log(entered, "cleaning", dest, expected=blocked_end, by=agent,
                     reason=f"rental #{bid} returned",
                     metadata={"block_id": bid, "returned_at": self.iso(finished),
                               "scheduled_return": self.iso(scheduled_end)})  # fmt: skip
            self.log(max(blocked_end, entered + 5), "available", dest, by=self.system_id,
                     reason="prep time after return is over")  # fmt: skip
        elif kind == "maintenance":
            self.log(started, "maintenance", pos, expected=scheduled_end, by=manager,
                     reason=f"work order #{bid}: {notes}"[:200])  # fmt: skip
            self.log(finished, "available", pos, by=manager, reason=f"work order #{bid} done")
        else:
            self.log(started, "in_transit", pos, dest=dest, block=bid, expected=scheduled_end,
                     by=manager, reason=f"transfer #{bid} to {self.locs[dest].code}")  # fmt: skip
            self.log(finished, "available", dest, by=self.staff[dest][0],
                     reason=f"transfer #{bid} arrived from {self.locs[pos].code}")  # fmt: skip

    def add_dispute(self, changes: list[tuple[Any, ...]], home: int) -> None:
        """Seed the dispute the analytics docs walk through: a wrong workshop visit, undone."""
        manager, agent = self.staff[home][0], self.staff[home][2]
        for days in DISPUTE_DAYS_AGO:
            at = self.align(self.now - days * DAY, home, 8, 10)
            k = sum(1 for c in changes if c[0] <= at)
            if k == 0 or changes[k - 1][1] != "available":
                continue
            # Between two changes only: after the last one it would be the live state, which
            # the car's status row (written from the timeline) would not match.
            if k == len(changes) or changes[k][0] < at + 5 * 60:
                continue
            li = changes[k - 1][2]
            wrong = (at, "maintenance", li, None, None, None, None, agent,
                     "brake noise reported", {}, None)  # fmt: skip
            undo = (at + 150, "available", li, None, None, None, None, manager,
                    "rollback: wrong car, the noise was the car next to it",
                    {"reverted_status": "maintenance"}, "previous")  # fmt: skip
            changes[k:k] = [wrong, undo]
            return

    def timeline(
        self,
        vehicle: tuple[int, int, int, int],
        role: int,
        soon: bool,
        wrong_pickup: bool,
        out: list[str],
    ) -> tuple[Any, ...]:
        """Write one vehicle's blocks in time order and return its live status row."""
        rng, now, gap = self.rng, self.now, self.gap
        vid, ci, home, registered = vehicle
        # Written out although a trigger would copy it, so the load needs no lookup per block.
        self.category_id, spec = self.cats[ci]
        buffer, grace = spec.prep_minutes, spec.grace_minutes
        manager, agents = self.staff[home][0], self.staff[home][1:]
        self.log(registered, "available", home, by=manager, reason="registered to the fleet")
        if self.bpv == 0:
            return (vid, "available", home, None, None, None, None, registered)

        # When the past must be over: the start of whatever the car is doing now.
        if role == CLEANING:
            returned = now - rng.randrange(5, buffer, 5)
            deadline = returned - self.rental_minutes(at_least_a_day=True)
        elif role in (RENTED, MAINTENANCE):
            length = (
                self.rental_minutes()
                if role == RENTED
                else rng.choice((240, 480, DAY, 2 * DAY, 3 * DAY))
            )
            deadline = now - self.elapsed(length)
            due = deadline + length
        elif role == OVERDUE:
            due = now - rng.randrange(60, 36 * 60 + 1, 15)
            deadline = due - self.rental_minutes(at_least_a_day=True)
        elif role == IN_TRANSIT:
            deadline = now - 16 * 60  # no transfer between neighbours takes longer
        else:
            deadline = now - min(int(rng.expovariate(1 / gap)), 20 * DAY)

        # The past: completed blocks, each starting where the previous one ended.
        pos, free_since = home, registered
        t = self.history_start + int(rng.random() * gap)
        while True:
            kind, dest = self.pick(pos, home)
            mean = gap * (QUIET if t < self.win_start else 1)
            start, end = self.place(kind, pos, dest, t + int(rng.expovariate(1 / mean)))
            finished = self.actual_end(kind, start, end, grace)
            blocked_end = finished + (buffer if kind == "rental" else 0)
            if blocked_end > deadline:
                break
            lead = rng.randint(120, 30 * DAY) if kind == "rental" else rng.randint(120, 10 * DAY)
            who = self.customer() if kind == "rental" else None
            started = start + rng.randrange(0, 25, 5)
            notes = rng.choice(MAINTENANCE_NOTES) if kind == "maintenance" else ""
            bid = self.emit(out, vid, kind, "completed", start, finished, blocked_end, end, pos,
                            dest, who, started, finished, start - lead, notes)  # fmt: skip
            self.log_past(kind, bid, pos, dest, who, started, end, finished, blocked_end, notes)
            pos, t, free_since = dest, blocked_end, blocked_end

        # Now: the block the car is in (or just came out of), and its live status.
        status: tuple[Any, ...]
        if role == CLEANING:
            dest = rng.choice(self.partners[pos]) if self.partners[pos] and rng.random() < 0.12 \
                else pos  # fmt: skip
            scheduled = returned + rng.choice((-60, -30, 0, 0, 30))
            self.emit(out, vid, "rental", "completed", deadline, returned, returned + buffer,
                      scheduled, pos, dest, self.customer(), deadline, returned,
                      deadline - rng.randint(120, 30 * DAY))  # fmt: skip
            bid = self.block_id
            cust = self.last_customer
            self.log(deadline, "rented", pos, customer=cust, block=bid, expected=scheduled,
                     by=agents[bid & 1], reason=f"rental #{bid} picked up")  # fmt: skip
            self.log(returned, "cleaning", dest, expected=returned + buffer, by=agents[bid & 1],
                     reason=f"rental #{bid} returned",
                     metadata={"block_id": bid, "returned_at": self.iso(returned)})  # fmt: skip
            pos, t = dest, returned + buffer
            status = (vid, "cleaning", pos, None, None, None, returned + buffer, returned)
        elif role in (RENTED, OVERDUE):
            dest = rng.choice(self.partners[pos]) if self.partners[pos] and rng.random() < 0.12 \
                else pos  # fmt: skip
            who = self.customer()
            started = deadline + rng.randrange(0, 25, 5)
            bid = self.emit(out, vid, "rental", "active", deadline, due, due + buffer, due, pos,
                            dest, who, started, None,
                            deadline - rng.randint(120, 30 * DAY))  # fmt: skip
            status = (vid, "rented", pos, None, who, bid, due, started)
            self.log(started, "rented", pos, customer=who, block=bid, expected=due,
                     by=agents[bid & 1], reason=f"rental #{bid} picked up")  # fmt: skip
            pos, t = dest, max(due + buffer, now)
            if role == OVERDUE:
                self.counts["overdue"] += 1
        elif role == MAINTENANCE:
            bid = self.emit(out, vid, "maintenance", "active", deadline, due, due, due, pos, pos,
                            None, deadline, None, deadline - rng.randint(120, 10 * DAY),
                            rng.choice(MAINTENANCE_NOTES))  # fmt: skip
            status = (vid, "maintenance", pos, None, None, None, due, deadline)
            self.log(deadline, "maintenance", pos, expected=due, by=manager,
                     reason=f"work order #{bid}")  # fmt: skip
            t = due
        elif role == IN_TRANSIT:
            partners = self.partners[pos]
            dest = home if pos != home and home in partners else rng.choice(partners)
            length = self.travel[pos, dest]
            start = now - self.elapsed(length)
            bid = self.emit(out, vid, "transfer", "active", start, start + length, start + length,
                            start + length, pos, dest, None, start, None,
                            start - rng.randint(120, 3 * DAY))  # fmt: skip
            status = (vid, "in_transit", pos, dest, None, bid, start + length, start)
            self.log(start, "in_transit", pos, dest=dest, block=bid, expected=start + length,
                     by=manager, reason=f"transfer #{bid} to {self.locs[dest].code}")  # fmt: skip
            self.counts["in_transit"] += 1
            pos, t = dest, start + length
        else:
            status = (vid, "available", pos, None, None, None, None, free_since)
            t = now

        # The future: bookings and plans, made before now, sparser further ahead.
        first = True
        horizon = max(1, self.win_end - now)
        while True:
            if first and role == OVERDUE and soon:
                # The late car is promised to the next customer in a few hours.
                kind, dest = "rental", pos
                start = now + rng.randint(1, 5) * 60
                end = start + self.rental_minutes()
                self.counts["conflicts"] += 1
            else:
                kind, dest = ("rental", pos) if first and wrong_pickup else self.pick(pos, home)
                pause = int(rng.expovariate(1 / gap) * (0.6 + 0.8 * (t - now) / horizon))
                if first and role == OVERDUE:
                    pause += DAY
                start, end = self.place(kind, pos, dest, t + pause)
            if start >= self.win_end:
                break
            origin = pos
            if first and wrong_pickup:
                # Booked for pickup at a lot the car will not be at.
                others = self.partners[pos] or [i for i in range(len(self.locs)) if i != pos]
                origin = dest = rng.choice(others)
                self.counts["conflicts"] += 1
            first = False
            booked = min(start - rng.randint(120, 30 * DAY), now - 5 - rng.randrange(3 * DAY))
            if kind == "rental":
                self.emit(out, vid, "reservation", "active", start, end, end + buffer, end,
                          origin, dest, self.customer(), None, None, booked)  # fmt: skip
                t = end + buffer
            else:
                notes = rng.choice(MAINTENANCE_NOTES) if kind == "maintenance" else ""
                self.emit(out, vid, kind, "active", start, end, end, end, origin, dest, None,
                          None, None, booked, notes)  # fmt: skip
                t = end
            pos = dest
        return status
