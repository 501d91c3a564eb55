"""DuckDB over the live database: the offline-installed postgres extension and the views."""

from __future__ import annotations

import duckdb
import pytest
from sqlalchemy import text

from db import status
from pipeline import analytics
from tests.conftest import add_vehicle, build_world


def test_duckdb_reads_the_live_status_history(committed, database_url, tmp_path):
    with committed.begin() as c:
        world = build_world(c)
        v = add_vehicle(c, world, "B DK 1")
        status.change_status(
            c, vehicle_id=v.id, new_status="cleaning", changed_by=world.agent.id, reason="wash"
        )
    with committed.connect() as c:
        expected = c.execute(text("SELECT count(*) FROM vehicle_status_log")).scalar()
    con = analytics.connect(postgres_url=database_url, extension_directory=tmp_path / "ext")
    try:
        got = con.execute("SELECT count(*) FROM fleet.status_history").fetchone()[0]
        plate, new = con.execute(
            "SELECT v.plate, h.new_status FROM fleet.status_history h"
            " JOIN fleet.vehicles v ON v.id = h.vehicle_id ORDER BY h.id DESC LIMIT 1"
        ).fetchone()
    finally:
        con.close()
    assert got == expected >= 1
    assert (plate, new) == ("B DK 1", "cleaning")


def test_attachment_is_read_only(database_url, tmp_path):
    con = analytics.connect(postgres_url=database_url, extension_directory=tmp_path / "ext")
    try:
        with pytest.raises(duckdb.Error):
            con.execute("DELETE FROM pg.public.locations")
    finally:
        con.close()


def test_dsn_quotes_odd_values():
    dsn = analytics.libpq_dsn("postgresql+psycopg://u:p'w@/fleet?host=/tmp/my dir")
    assert "host='/tmp/my dir'" in dsn and "password='p\\'w'" in dsn
