"""Utilization and availability over time from DuckDB, on status histories with known times."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest
from sqlalchemy import Connection, Engine, text

from db import fleet, status
from db.errors import InvalidInput
from fleet.settings import Settings
from pipeline import analytics
from pipeline.analytics import UsageQuery
from pipeline.archive import archive_history
from tests.conftest import World, add_vehicle, build_world

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
DAY = date(2026, 3, 10)  # a Tuesday, well clear of daylight-saving changes
LATER = datetime(2026, 6, 1, tzinfo=UTC)  # "now" for questions about March


def local(day: date, hour: float, tz: ZoneInfo = BERLIN) -> datetime:
    """Return the lot's local wall-clock time `hour` hours after midnight of `day`."""
    return datetime.combine(day, datetime.min.time(), tz) + timedelta(hours=hour)


def _move(c: Connection, log_id: int, at: datetime) -> None:
    # The engine stamps changes with the clock; history "as it happened" needs explicit times.
    c.execute(
        text("UPDATE vehicle_status_log SET changed_at = :at WHERE id = :id"),
        {"at": at, "id": log_id},
    )


def _registered(c: Connection, world: World, plate: str, at: datetime, **kw) -> fleet.Vehicle:
    v = add_vehicle(c, world, plate, **kw)
    c.execute(
        text("UPDATE vehicle_status_log SET changed_at = :at WHERE vehicle_id = :v"),
        {"at": at, "v": v.id},
    )
    return v


def _change(
    c: Connection, world: World, v: fleet.Vehicle, new: str, at: datetime, **fields
) -> None:
    if new == "rented":
        fields.setdefault("customer_id", world.alice.id)
        fields.setdefault("expected_available_at", at + timedelta(hours=12))
    done = status.change_status(
        c, vehicle_id=v.id, new_status=new, changed_by=world.agent.id, reason="test", **fields
    )
    _move(c, done.log_id, at)


def _rent(c: Connection, world: World, v: fleet.Vehicle, out: datetime, back: datetime) -> None:
    """Rent the vehicle from `out` to `back`, then clean it for two hours."""
    _change(c, world, v, "rented", out)
    _change(c, world, v, "cleaning", back)
    _change(c, world, v, "available", back + timedelta(hours=2))


@pytest.fixture
def history(committed: Engine) -> World:
    """Three vehicles with a known March 10th.

    B UT 1 (ECON, Berlin) is rented 06:00-18:00 Berlin time, cleaned until 20:00: 12 of 24
    hours rented. B UT 2 (SUV, Berlin) stands available all day. N UT 3 (ECON, New York) goes
    out at 20:00 New York time and comes back at 08:00 the next morning: 4 hours rented on
    New York's March 10th, 8 on its March 11th.
    """
    with committed.begin() as c:
        world = build_world(c)
        start = local(DAY - timedelta(days=2), 0)
        one = _registered(c, world, "B UT 1", start)
        _registered(c, world, "B UT 2", start, category=world.suv)
        three = _registered(c, world, "N UT 3", start, location=world.nyc)
        _rent(c, world, one, local(DAY, 6), local(DAY, 18))
        _rent(c, world, three, local(DAY, 20, NEW_YORK), local(DAY, 32, NEW_YORK))
    return world


@pytest.fixture
def duck(database_url: str, tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = analytics.connect(
        postgres_url=database_url,
        extension_directory=tmp_path / "ext",
        archive_dir=tmp_path / "archive",
    )
    yield con
    con.close()


def _rows(frame, *columns: str) -> dict[tuple, dict[str, float]]:
    return {
        tuple(r[c] for c in columns): {k: round(v, 4) for k, v in r.items() if k not in columns}
        for r in frame.to_dict("records")
    }


def test_a_vehicle_rented_12_of_24_hours_is_half_utilized(history, duck):
    q = UsageQuery(DAY, DAY, by="category", location_id=history.ber.id)
    table = analytics.usage_table(analytics.status_hours(duck, q, now=LATER))
    rows = _rows(table, "period", "group")

    econ = rows[(DAY, "ECON")]
    assert econ["vehicle_hours"] == 24
    assert econ["rented_hours"] == 12
    assert econ["cleaning_hours"] == 2
    assert econ["utilization"] == 0.5
    assert econ["availability"] == round(10 / 24, 4)
    assert rows[(DAY, "SUV")]["utilization"] == 0
    assert rows[(DAY, "SUV")]["availability"] == 1
    assert set(rows) == {(DAY, "ECON"), (DAY, "SUV")}  # the New York car is at another lot


def test_each_lot_counts_its_own_local_days(history, duck):
    q = UsageQuery(DAY, DAY + timedelta(days=1), by="location")
    rows = _rows(
        analytics.usage_table(analytics.status_hours(duck, q, now=LATER)), "period", "group"
    )

    # Berlin: two cars, one rented 12 hours; New York: its own midnight splits the rental 4 + 8.
    assert rows[(DAY, "BER1")]["utilization"] == 0.25
    assert rows[(DAY, "JFK1")]["rented_hours"] == 4
    assert rows[(DAY + timedelta(days=1), "JFK1")]["rented_hours"] == 8
    assert rows[(DAY, "JFK1")]["vehicle_hours"] == 24
    assert (DAY, "MUC1") not in rows  # a lot without vehicles has no row


def test_status_hours_give_each_status_its_share(history, duck):
    q = UsageQuery(DAY, DAY, location_id=history.ber.id)
    hours = analytics.status_hours(duck, q, now=LATER)
    got = {(r["status"]): (r["hours"], round(r["share"], 4)) for r in hours.to_dict("records")}
    assert list(hours.columns) == ["period", "group", "status", "hours", "share"]
    assert got == {
        "available": (34.0, round(34 / 48, 4)),
        "rented": (12.0, 0.25),
        "cleaning": (2.0, round(2 / 48, 4)),
    }
    by_status = analytics.hours_by_status(hours)
    assert by_status.loc[0, "rented"] == 12 and by_status.loc[0, "maintenance"] == 0


def test_a_week_adds_up_its_days_from_monday(history, duck):
    monday = DAY - timedelta(days=1)
    q = UsageQuery(
        monday,
        monday + timedelta(days=6),
        granularity="week",
        by="category",
        category_id=history.econ.id,
        location_id=history.ber.id,
    )
    rows = _rows(
        analytics.usage_table(analytics.status_hours(duck, q, now=LATER)), "period", "group"
    )
    assert list(rows) == [(monday, "ECON")]
    assert rows[(monday, "ECON")]["vehicle_hours"] == 7 * 24
    assert rows[(monday, "ECON")]["utilization"] == round(12 / 168, 4)


def test_time_after_now_is_not_counted(history, duck):
    now = local(DAY, 12)
    q = UsageQuery(
        DAY,
        DAY + timedelta(days=3),
        by="category",
        category_id=history.econ.id,
        location_id=history.ber.id,
    )
    rows = _rows(analytics.usage_table(analytics.status_hours(duck, q, now=now)), "period", "group")
    # By noon the car had been rented six of its twelve hours; later days have not begun.
    assert rows == {
        (DAY, "ECON"): {
            "vehicle_hours": 12.0,
            "available_hours": 6.0,
            "reserved_hours": 0.0,
            "rented_hours": 6.0,
            "cleaning_hours": 0.0,
            "maintenance_hours": 0.0,
            "in_transit_hours": 0.0,
            "out_of_service_hours": 0.0,
            "utilization": 0.5,
            "availability": 0.5,
        }
    }


def test_a_daylight_saving_day_has_23_hours(committed, duck):
    spring = date(2026, 3, 29)  # clocks go forward in Berlin
    with committed.begin() as c:
        world = build_world(c)
        _registered(c, world, "B UT 9", local(spring - timedelta(days=1), 0))
    q = UsageQuery(spring, spring, location_id=world.ber.id)
    table = analytics.usage_table(analytics.status_hours(duck, q, now=LATER))
    assert table.loc[0, "vehicle_hours"] == 23
    assert table.loc[0, "availability"] == 1


def test_archived_history_counts_the_same(history, committed, database_url, tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    summary = archive_history(committed, archive_dir=settings.archive_location)
    assert summary.rows_archived > 0
    q = UsageQuery(DAY, DAY, by="category", location_id=history.ber.id)

    hours = analytics.fetch_status_hours(q, postgres_url=database_url, settings=settings, now=LATER)

    econ = analytics.usage_table(hours).set_index("group").loc["ECON"]
    assert econ["utilization"] == 0.5
    assert (analytics.extension_directory(settings)).is_dir()


def test_no_history_gives_empty_tables(committed, duck):
    q = UsageQuery(DAY, DAY)
    hours = analytics.status_hours(duck, q, now=LATER)
    assert hours.empty
    assert list(analytics.usage_table(hours).columns)[:3] == ["period", "group", "vehicle_hours"]
    assert analytics.hours_by_status(hours).empty


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"first_day": DAY, "last_day": DAY - timedelta(days=1)}, "last_day"),
        ({"first_day": DAY, "last_day": DAY + timedelta(days=400)}, "last_day"),
        ({"first_day": DAY, "last_day": DAY, "granularity": "month"}, "granularity"),
        ({"first_day": DAY, "last_day": DAY, "by": "plate"}, "by"),
    ],
)
def test_a_question_that_makes_no_sense_is_refused(kwargs, field):
    with pytest.raises(InvalidInput) as err:
        UsageQuery(**kwargs)
    assert err.value.field == field
