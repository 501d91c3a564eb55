"""Materialized availability: free minutes per vehicle and local day, DST days included."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from db import availability, holds, maintenance, rentals, status
from db.errors import InvalidInput
from tests.conftest import add_vehicle
from tests.db.factories import booking

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def _at(day: date, hour: float, tz=BERLIN) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz) + timedelta(hours=hour)


def _rows(conn, vehicle_id):
    return {
        r.day: r
        for r in conn.execute(
            text(
                "SELECT day, location_id, free_minutes, is_available, blocking_reason,"
                " blocking_reference_id FROM availability_cache WHERE vehicle_id = :v"
            ),
            {"v": vehicle_id},
        )
    }


@pytest.fixture
def day(world) -> date:
    """A Berlin calendar day a few days after the world's now."""
    return world.now.astimezone(BERLIN).date() + timedelta(days=3)


def test_one_row_per_vehicle_and_day_with_the_lot_it_is_on(conn, world, day):
    a = add_vehicle(conn, world, "B MZ 1")
    b = add_vehicle(conn, world, "M MZ 2", location=world.muc)

    written = availability.materialize(conn, first_day=day, days=3, vehicle_ids=[a.id, b.id])

    assert written == 6
    for v, lot in ((a, world.ber), (b, world.muc)):
        rows = _rows(conn, v.id)
        assert sorted(rows) == [day, day + timedelta(days=1), day + timedelta(days=2)]
        assert {r.location_id for r in rows.values()} == {lot.id}
        assert {(r.free_minutes, r.is_available, r.blocking_reason) for r in rows.values()} == {
            (1440, True, None)
        }


def test_booking_takes_its_hours_and_prep_buffer_from_the_day(conn, world, day):
    v = add_vehicle(conn, world, "B MZ 3")
    res = booking(conn, world, v, start=_at(day, 10), end=_at(day, 14))  # + 30 min buffer

    availability.materialize(conn, first_day=day, days=2, vehicle_ids=[v.id])

    rows = _rows(conn, v.id)
    booked = rows[day]
    assert (booked.free_minutes, booked.is_available) == (1440 - 270, False)
    assert (booked.blocking_reason, booked.blocking_reference_id) == ("reservation", res.id)
    assert (
        rows[day + timedelta(days=1)].free_minutes,
        rows[day + timedelta(days=1)].is_available,
    ) == (
        1440,
        True,
    )


def test_booking_over_midnight_is_split_between_the_local_days(conn, world, day):
    v = add_vehicle(conn, world, "B MZ 4")
    booking(conn, world, v, start=_at(day, 20), end=_at(day, 30))  # 20:00 to 06:00 next day

    availability.materialize(conn, first_day=day, days=2, vehicle_ids=[v.id])

    rows = _rows(conn, v.id)
    assert rows[day].free_minutes == 1440 - 4 * 60
    assert rows[day + timedelta(days=1)].free_minutes == 1440 - 6 * 60 - 30


def test_several_blocks_in_a_day_add_up_and_the_first_names_the_reason(conn, world, day):
    v = add_vehicle(conn, world, "B MZ 5")
    work = maintenance.schedule_maintenance(
        conn, vehicle_id=v.id, start=_at(day, 7), end=_at(day, 9), created_by=world.agent.id
    )
    booking(conn, world, v, start=_at(day, 12), end=_at(day, 15))

    availability.materialize(conn, first_day=day, days=1, vehicle_ids=[v.id])

    row = _rows(conn, v.id)[day]
    assert row.free_minutes == 1440 - 120 - 210  # no buffer after service work
    assert (row.blocking_reason, row.blocking_reference_id) == ("maintenance", work.id)


def test_cancelled_bookings_and_run_out_holds_take_nothing(conn, world, day):
    v = add_vehicle(conn, world, "B MZ 6")
    res = booking(conn, world, v, start=_at(day, 10), end=_at(day, 14))
    rentals.cancel_reservation(conn, block_id=res.id, cancelled_by=world.agent.id)
    hold = holds.place_hold(
        conn,
        vehicle_id=v.id,
        start=_at(day, 16),
        end=_at(day, 18),
        location_id=world.ber.id,
        held_by=world.agent.id,
    )
    conn.execute(
        text("UPDATE blocks SET expires_at = now() - interval '1 minute' WHERE id = :h"),
        {"h": hold.id},
    )

    availability.materialize(conn, first_day=day, days=1, vehicle_ids=[v.id])

    assert _rows(conn, v.id)[day].free_minutes == 1440


def test_out_of_service_car_has_no_free_minutes(conn, world, day):
    v = add_vehicle(conn, world, "B MZ 7")
    status.change_status(
        conn, vehicle_id=v.id, new_status="out_of_service", changed_by=world.agent.id, reason="x"
    )

    availability.materialize(conn, first_day=day, days=2, vehicle_ids=[v.id])

    assert {
        (r.free_minutes, r.is_available, r.blocking_reason) for r in _rows(conn, v.id).values()
    } == {(0, False, "out_of_service")}


@pytest.mark.parametrize(
    ("tz_lot", "on", "minutes"),
    [
        ("ber", date(2027, 3, 28), 1380),  # clocks go forward in Berlin
        ("ber", date(2027, 10, 31), 1500),  # and back
        ("ber", date(2027, 3, 14), 1440),
        ("nyc", date(2027, 3, 14), 1380),  # New York changes two weeks earlier
        ("nyc", date(2027, 3, 28), 1440),
        ("nyc", date(2027, 11, 7), 1500),
    ],
)
def test_daylight_saving_days_have_their_real_length_in_the_lots_zone(
    conn, world, tz_lot, on, minutes
):
    v = add_vehicle(conn, world, f"X MZ {on.day}", location=getattr(world, tz_lot))

    availability.materialize(conn, first_day=on, days=1, vehicle_ids=[v.id])

    assert _rows(conn, v.id)[on].free_minutes == minutes


def test_dst_day_fully_booked_has_nothing_free(conn, world):
    v = add_vehicle(conn, world, "B MZ 8")
    on = date(2027, 3, 28)
    start, end = availability.local_day_bounds(on, "Europe/Berlin")
    # aware datetimes in one zone subtract as wall-clock times; the instants are 23 h apart
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=23)
    booking(conn, world, v, start=start - timedelta(hours=2), end=end + timedelta(hours=2))

    availability.materialize(conn, first_day=on, days=1, vehicle_ids=[v.id])

    assert (_rows(conn, v.id)[on].free_minutes, _rows(conn, v.id)[on].is_available) == (0, False)


def test_new_york_car_counts_its_own_local_midnight(conn, world, day):
    v = add_vehicle(conn, world, "J MZ 9", location=world.nyc)
    booking(
        conn, world, v, start=_at(day, 22, NEW_YORK), end=_at(day, 26, NEW_YORK), location=world.nyc
    )

    availability.materialize(conn, first_day=day, days=2, vehicle_ids=[v.id])

    rows = _rows(conn, v.id)
    assert rows[day].free_minutes == 1440 - 120
    assert rows[day + timedelta(days=1)].free_minutes == 1440 - 120 - 30


def test_re_running_rewrites_the_same_rows_with_fresh_figures(conn, world, day):
    v = add_vehicle(conn, world, "B MZ 10")
    res = booking(conn, world, v, start=_at(day, 10), end=_at(day, 14))
    assert availability.materialize(conn, first_day=day, days=2, vehicle_ids=[v.id]) == 2
    before = _rows(conn, v.id)

    assert availability.materialize(conn, first_day=day, days=2, vehicle_ids=[v.id]) == 2
    assert _rows(conn, v.id) == before

    rentals.cancel_reservation(conn, block_id=res.id, cancelled_by=world.agent.id)
    availability.materialize(conn, first_day=day, days=2, vehicle_ids=[v.id])

    after = _rows(conn, v.id)[day]
    assert (after.free_minutes, after.is_available, after.blocking_reason) == (1440, True, None)
    assert after.blocking_reference_id is None
    count = conn.execute(
        text("SELECT count(*) FROM availability_cache WHERE vehicle_id = :v"), {"v": v.id}
    ).scalar_one()
    assert count == 2


def test_vehicle_filter_leaves_other_vehicles_alone(conn, world, day):
    a = add_vehicle(conn, world, "B MZ 11")
    b = add_vehicle(conn, world, "B MZ 12")

    availability.materialize(conn, first_day=day, days=1, vehicle_ids=[a.id])

    assert list(_rows(conn, a.id)) == [day]
    assert _rows(conn, b.id) == {}


def test_retired_vehicles_are_not_materialized(conn, world, day):
    v = add_vehicle(conn, world, "B MZ 13")
    conn.execute(text("UPDATE vehicles SET active = false WHERE id = :v"), {"v": v.id})

    assert availability.materialize(conn, first_day=day, days=1, vehicle_ids=[v.id]) == 0


@pytest.mark.parametrize("days", [0, -1, 401])
def test_days_outside_one_to_four_hundred_are_refused(conn, day, days):
    with pytest.raises(InvalidInput, match="days must be between 1 and 400"):
        availability.materialize(conn, first_day=day, days=days)
