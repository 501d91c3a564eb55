"""DuckDB over the live database and the archive: the offline postgres extension, the views."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from db import rentals, status
from fleet.cli.main import app
from fleet.settings import get_settings
from pipeline import analytics
from pipeline.archive import archive_history
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


def test_blocks_view_gives_periods_as_times(committed, database_url, tmp_path):
    with committed.begin() as c:
        world = build_world(c)
        v = add_vehicle(c, world, "B DK 2")
        booked = rentals.reserve(
            c,
            vehicle_id=v.id,
            start=world.at(24),
            end=world.at(48),
            pickup_location_id=world.ber.id,
            customer_id=world.alice.id,
            booked_by=world.agent.id,
        )
    con = analytics.connect(
        postgres_url=database_url, extension_directory=tmp_path / "ext", archive_dir=tmp_path
    )
    try:
        row = con.execute(
            "SELECT kind, starts_at, ends_at, blocked_until FROM fleet.blocks WHERE id = ?",
            [booked.id],
        ).fetchone()
        overdue_columns = [r[0] for r in con.execute("DESCRIBE fleet.overdue").fetchall()]
    finally:
        con.close()
    # ECON's prep buffer is 30 minutes.
    assert row == ("reservation", world.at(24), world.at(48), world.at(48.5))
    assert {"block_id", "estimated_late_fee", "resolved_at"} <= set(overdue_columns)


def _archived_world(committed: Engine, archive_dir: Path) -> int:
    """Commit a vehicle with one change 120 days old, archive it; return the history count."""
    with committed.begin() as c:
        world = build_world(c)
        v = add_vehicle(c, world, "B DK 3")
        old = status.change_status(
            c, vehicle_id=v.id, new_status="cleaning", changed_by=world.agent.id, reason="wash"
        )
        c.execute(
            text(
                "UPDATE vehicle_status_log SET changed_at = now() - interval '120 days'"
                " WHERE id = :id"
            ),
            {"id": old.log_id},
        )
    summary = archive_history(committed, archive_dir=archive_dir)
    assert summary.rows_archived == 1
    with committed.connect() as c:
        return c.execute(text("SELECT count(*) FROM vehicle_status_log")).scalar() + 1


@pytest.fixture
def cli(monkeypatch, database_url, tmp_path):
    monkeypatch.setenv("FLEET_DATABASE_URL", database_url)
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FLEET_ARCHIVE_DIR", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, ["analytics", *args])
    get_settings.cache_clear()


COUNT = "SELECT count(*) AS n FROM fleet.status_history"


def test_cli_reads_the_archive_from_the_option_or_the_settings(
    committed, cli, monkeypatch, tmp_path
):
    archive_dir = tmp_path / "elsewhere"
    total = _archived_world(committed, archive_dir)

    without = cli("--query", COUNT, "--json")
    given = cli("--query", COUNT, "--json", "--archive-dir", str(archive_dir))
    monkeypatch.setenv("FLEET_ARCHIVE_DIR", str(archive_dir))
    get_settings.cache_clear()
    from_settings = cli("--query", COUNT, "--csv")

    assert given.exit_code == 0, given.output
    assert json.loads(without.stdout) == [{"n": total - 1}]
    assert json.loads(given.stdout) == [{"n": total}]
    assert from_settings.stdout.splitlines() == ["n", str(total)]


def test_cli_refuses_an_archive_dir_that_is_not_there(cli, tmp_path):
    r = cli("--query", COUNT, "--archive-dir", str(tmp_path / "typo"))
    assert r.exit_code == 2
    # The terminal wraps long messages (at a width that depends on the path's length).
    said = " ".join(r.stderr.split())
    assert "is not a folder" in said and "typo" in said
