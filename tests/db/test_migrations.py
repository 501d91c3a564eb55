"""Migrations are the only schema source: one head, and down/up works with data present."""

from __future__ import annotations

from sqlalchemy import text

from db import migrate
from db.database import make_engine
from tests.conftest import add_vehicle, build_world


def test_there_is_exactly_one_head():
    assert len(migrate.heads()) == 1


def test_database_is_at_head(conn):
    assert migrate.current(conn) == migrate.heads()[0]


def test_downgrade_and_upgrade_round_trip_with_data(server_url):
    """Run the whole chain down and up again on a scratch database holding real rows."""
    from sqlalchemy.engine import make_url

    admin = make_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text("DROP DATABASE IF EXISTS fleet_migration_check WITH (FORCE)"))
        c.execute(text("CREATE DATABASE fleet_migration_check"))
    url = make_url(server_url).set(database="fleet_migration_check")
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        with engine.begin() as c:
            migrate.upgrade(c)
            world = build_world(c)
            add_vehicle(c, world, "MIG 1")
        with engine.begin() as c:
            migrate.downgrade(c, "base")
        with engine.begin() as c:
            assert migrate.current(c) is None
            tables = c.execute(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            ).scalar()
            assert tables == 1  # only alembic_version is left
            migrate.upgrade(c)
            assert migrate.current(c) == migrate.heads()[0]
            assert c.execute(text("SELECT count(*) FROM vehicles")).scalar() == 0
    finally:
        engine.dispose()
        with admin.connect() as c:
            c.execute(text("DROP DATABASE IF EXISTS fleet_migration_check WITH (FORCE)"))
        admin.dispose()


def test_plate_key_folds_look_alike_characters(conn):
    folded = conn.execute(text("SELECT fleet_plate_key('bo-5 1zq')")).scalar()
    assert folded == "80512" + "0"


def test_time_zone_check_rejects_unknown_zones(conn):
    assert conn.execute(text("SELECT fleet_is_time_zone('Europe/Berlin')")).scalar() is True
    assert conn.execute(text("SELECT fleet_is_time_zone('Mars/Olympus')")).scalar() is False
