"""Test fixtures: a real PostgreSQL (fresh embedded server unless FLEET_TEST_DATABASE_URL)."""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from db import fleet, migrate
from db.database import make_engine, sqlalchemy_url, start_embedded
from fleet.settings import Settings
from tests.browser import browser  # noqa: F401 - one Chromium for every page test

DATA_TABLES = (
    "push_subscriptions, user_preferences, notification_outbox, pipeline_state, history_archives,"
    " feed_rejects, feed_records, contracts, feed_files, saved_searches, availability_cache,"
    " overdue_vehicles, availability_events,"
    " vehicle_status_log, vehicle_status_realtime, blocks, vehicles, customers, users,"
    " vehicle_categories, locations"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that drives Chromium `browser`, so the inner loop can leave them out."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


def _server_url() -> str:
    url = Settings().test_database_url
    if url:
        return sqlalchemy_url(url)
    # A fresh embedded server per test session, deleted when the session ends.
    data_dir = Path(tempfile.mkdtemp(prefix="fleet-test-"))
    return sqlalchemy_url(start_embedded(data_dir, cleanup_mode="delete"))


@pytest.fixture(scope="session")
def server_url() -> str:
    return _server_url()


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """Create a fresh database on the server, migrated to head, dropped at the end."""
    name = f"fleet_test_{secrets.token_hex(4)}"
    admin = make_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=None)
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    with engine.begin() as c:
        migrate.upgrade(c)
    engine.dispose()
    yield url
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url, pool_size=25, max_overflow=10)
    yield eng
    eng.dispose()


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    with engine.connect() as c:
        trans = c.begin()
        try:
            yield c
        finally:
            trans.rollback()


def empty_tables(engine: Engine, tables: str, *, restart_identity: bool = False) -> None:
    """TRUNCATE, retried: a test server's page or stream may still be reading, and the two can
    deadlock (the suite's workers each keep a server running for their later tests)."""
    for attempt in range(5):
        try:
            with engine.begin() as c:
                c.execute(text("SET LOCAL lock_timeout = '5s'"))
                # The event sequence keeps counting: a running test server remembers what it
                # sent, and a rewound sequence would look like a restored database to it.
                seq = c.execute(text("SELECT last_value FROM availability_events_seq_seq")).scalar()
                restart = " RESTART IDENTITY" if restart_identity else ""
                c.execute(text(f"TRUNCATE {tables}{restart} CASCADE"))
                c.execute(text("SELECT setval('availability_events_seq_seq', :v)"), {"v": seq})
            return
        except OperationalError:
            if attempt == 4:
                raise
            time.sleep(0.5)


@pytest.fixture
def committed(engine: Engine) -> Iterator[Engine]:
    """For tests that need real commits (concurrency): data tables are emptied afterwards."""
    yield engine
    empty_tables(engine, DATA_TABLES, restart_identity=True)


@dataclass
class World:
    """A small fleet: two lots in different zones, three categories, staff and customers."""

    ber: fleet.Location
    muc: fleet.Location
    nyc: fleet.Location
    econ: fleet.Category
    suv: fleet.Category
    prem: fleet.Category
    agent: fleet.User
    agent2: fleet.User
    manager: fleet.User
    alice: fleet.Customer
    bob: fleet.Customer
    now: datetime

    def at(self, hours: float) -> datetime:
        """Return a time `hours` from the world's now."""
        return self.now + timedelta(hours=hours)


def build_world(conn: Connection) -> World:
    """Create the small reference fleet used by most tests."""
    ber = fleet.create_location(
        conn,
        code="BER1",
        name="Berlin Airport",
        time_zone="Europe/Berlin",
        latitude=52.3667,
        longitude=13.5033,
    )
    muc = fleet.create_location(
        conn,
        code="MUC1",
        name="Munich Central",
        time_zone="Europe/Berlin",
        latitude=48.1402,
        longitude=11.5600,
    )
    nyc = fleet.create_location(
        conn,
        code="JFK1",
        name="New York JFK",
        time_zone="America/New_York",
        latitude=40.6413,
        longitude=-73.7781,
    )
    econ = fleet.create_category(
        conn,
        code="ECON",
        name="Economy",
        hourly_rate=12,
        daily_rate=49,
        upgrade_rank=10,
        prep_buffer=timedelta(minutes=30),
    )
    suv = fleet.create_category(
        conn,
        code="SUV",
        name="SUV",
        hourly_rate=20,
        daily_rate=89,
        upgrade_rank=30,
        prep_buffer=timedelta(minutes=60),
    )
    prem = fleet.create_category(
        conn,
        code="PREM",
        name="Premium",
        hourly_rate=30,
        daily_rate=139,
        upgrade_rank=50,
        prep_buffer=timedelta(minutes=90),
    )
    agent = fleet.create_user(
        conn, username="anna", full_name="Anna Agent", role="agent", home_location_id=ber.id
    )
    agent2 = fleet.create_user(
        conn, username="ben", full_name="Ben Booker", role="agent", home_location_id=ber.id
    )
    manager = fleet.create_user(
        conn, username="maria", full_name="Maria Manager", role="manager", home_location_id=ber.id
    )
    alice = fleet.create_customer(
        conn,
        name="Alice Schmidt",
        phone="+49 30 1234567",
        email="alice@example.com",
        licence_number="B072RRE2I55",
    )
    bob = fleet.create_customer(
        conn,
        name="Bob Meyer",
        phone="+49 89 7654321",
        email="bob@example.com",
        licence_number="M1234567",
    )
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return World(ber, muc, nyc, econ, suv, prem, agent, agent2, manager, alice, bob, now)


_vin_counter = iter(range(10**6))


def add_vehicle(
    conn: Connection,
    world: World,
    plate: str,
    *,
    category: fleet.Category | None = None,
    location: fleet.Location | None = None,
    features: tuple[str, ...] = (),
    odometer_km: int = 10_000,
) -> fleet.Vehicle:
    """Register a test vehicle with a unique VIN."""
    n = next(_vin_counter)
    return fleet.create_vehicle(
        conn,
        plate=plate,
        vin=f"WVWZZZ1KZ{n:08d}",
        make="VW",
        model="Golf",
        year=2024,
        category_id=(category or world.econ).id,
        home_location_id=(location or world.ber).id,
        created_by=world.manager.id,
        features=features,
        odometer_km=odometer_km,
    )


@pytest.fixture
def world(conn: Connection) -> World:
    return build_world(conn)
