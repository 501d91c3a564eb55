"""Maintenance, return and transfer records: newest version wins, effects through the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from db import feeds
from pipeline.ingest import ingest_file
from tests.conftest import add_vehicle, build_world
from tests.db.factories import rental_under_way

MAINT = "external_id,version,updated_at,event,plate,location,starts_at,ends_at\n"
RETURNS = "external_id,returned_at,plate,location,contract_id\n"
TRANSFERS = (
    "external_id,version,updated_at,event,plate,from_location,to_location,departed_at,eta,"
    "arrived_at\n"
)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="minutes")


@pytest.fixture
def lot(committed):
    with committed.begin() as c:
        world = build_world(c)
        cars = [add_vehicle(c, world, f"B RC {i}") for i in range(1, 4)]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return committed, world, cars, now


def _maintenance_block(engine, reference):
    with engine.connect() as c:
        return c.execute(
            text(
                "SELECT state, lower(period) AS start, upper(period) AS end FROM blocks"
                " WHERE reference = :r ORDER BY id DESC LIMIT 1"
            ),
            {"r": reference},
        ).one()


def test_maintenance_versions_move_keep_and_cancel_the_block(lot):
    engine, _, cars, now = lot
    plate, start = cars[0].plate, now + timedelta(days=1)

    def row(version: int, event: str, hours: int) -> str:
        end = start + timedelta(hours=hours)
        return f"W-9,{version},{_iso(now)},{event},{plate},BER1,{_iso(start)},{_iso(end)}\n"

    ingest_file(engine, name="maintenance-1.csv", data=(MAINT + row(1, "scheduled", 4)).encode())
    same = ingest_file(
        engine, name="maintenance-2.csv", data=(MAINT + row(2, "scheduled", 4)).encode()
    )
    assert (same.applied, same.stale) == (0, 0)  # a newer version that changes nothing
    ingest_file(engine, name="maintenance-3.csv", data=(MAINT + row(3, "scheduled", 6)).encode())
    assert _maintenance_block(engine, "W-9").end == start + timedelta(hours=6)
    old = ingest_file(
        engine, name="maintenance-4.csv", data=(MAINT + row(2, "cancelled", 4)).encode()
    )
    assert old.stale == 1  # an older version arriving late changes nothing
    assert _maintenance_block(engine, "W-9").state == "active"
    ingest_file(engine, name="maintenance-5.csv", data=(MAINT + row(4, "cancelled", 6)).encode())
    assert _maintenance_block(engine, "W-9").state == "cancelled"


def test_returns_the_fleet_cannot_take_are_quarantined_with_their_line(lot):
    engine, world, cars, now = lot
    with engine.begin() as c:
        rental_under_way(c, world, cars[1], start=world.at(-5), end=world.at(3), reference="K-5")
    data = (
        RETURNS
        + f"R-1,{_iso(now - timedelta(hours=1))},{cars[0].plate},BER1,\n"  # not out at all
        + f"R-2,{_iso(now - timedelta(hours=9))},{cars[1].plate},BER1,\n"  # before its pickup
    ).encode()
    result = ingest_file(engine, name="returns-1.csv", data=data)
    assert (result.applied, result.rejected) == (0, 2)
    with engine.connect() as c:
        rejects = feeds.list_rejects(c, file_id=result.file_id)
        status = c.execute(
            text("SELECT current_status FROM vehicle_status_realtime WHERE vehicle_id = :v"),
            {"v": cars[1].id},
        ).scalar_one()
    assert [r.line for r in rejects] == [2, 3]
    assert "no open rental" in rejects[0].reason
    assert "before the rental's pickup" in rejects[1].reason
    assert status == "rented"  # nothing half-done


def test_an_arrival_without_a_recorded_departure_still_lands_the_car(lot):
    engine, _, cars, now = lot
    row = (
        f"T-4,1,{_iso(now)},arrived,{cars[2].plate},BER1,MUC1,"
        f"{_iso(now - timedelta(hours=3))},,{_iso(now - timedelta(minutes=5))}\n"
    )
    result = ingest_file(engine, name="transfers-1.csv", data=(TRANSFERS + row).encode())
    assert result.applied == 1
    with engine.connect() as c:
        where = c.execute(
            text(
                "SELECT s.current_status, l.code FROM vehicle_status_realtime s"
                " JOIN locations l ON l.id = s.location_id WHERE s.vehicle_id = :v"
            ),
            {"v": cars[2].id},
        ).one()
    assert tuple(where) == ("available", "MUC1")


def _last_entry(engine, vehicle_id):
    with engine.connect() as c:
        return c.execute(
            text(
                "SELECT change_reason, metadata FROM vehicle_status_log WHERE vehicle_id = :v"
                " ORDER BY id DESC LIMIT 1"
            ),
            {"v": vehicle_id},
        ).one()


def test_a_corrected_return_amends_the_rentals_return_with_its_notes_whole(lot):
    engine, world, cars, now = lot
    car = cars[0]
    with engine.begin() as c:
        rental = rental_under_way(c, world, car, start=world.at(-5), end=world.at(3))
    header = (
        "external_id,version,returned_at,plate,location,odometer_km,fuel_percent,damage_notes\n"
    )
    back = _iso(now - timedelta(hours=1))
    first = ingest_file(
        engine,
        name="returns-1.csv",
        data=(header + f"R-7,1,{back},{car.plate},BER1,19640,50,\n").encode(),
    )
    assert (first.applied, first.rejected) == (1, 0)
    damage = "-".join(["scratch on the rear bumper"] * 30)  # 800 characters, all of them kept

    corrected = ingest_file(
        engine,
        name="returns-2.csv",
        data=(header + f"R-7,2,{back},{car.plate},BER1,10640,75,{damage}\n").encode(),
    )

    assert (corrected.applied, corrected.rejected) == (1, 0)
    reason, metadata = _last_entry(engine, car.id)
    assert reason.startswith(
        f"return of rental #{rental.id} corrected by R-7 version 2: odometer 10640 km;"
        " fuel 75%; damage: scratch"
    )
    assert metadata["notes"] == f"fuel 75%; damage: {damage}"
    with engine.connect() as c:
        km = c.execute(text("SELECT odometer_km FROM vehicles WHERE id = :v"), {"v": car.id})
        assert km.scalar_one() == 10640
    replay = ingest_file(
        engine,
        name="returns-3.csv",
        data=(header + f"R-7,2,{back},{car.plate},BER1,10640,75,{damage}\n\n").encode(),
    )
    assert (replay.applied, replay.stale) == (0, 1)  # the same version again changes nothing
