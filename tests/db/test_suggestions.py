"""Suggestions from rental patterns: a customer's favourites, what a lot is asked for."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from db import blocks, fleet, rentals, suggestions
from db.errors import InvalidInput
from tests.conftest import add_vehicle
from tests.db.factories import booking

BERLIN = ZoneInfo("Europe/Berlin")


def _rented(conn, world, vehicle, *, start, hours, customer=None, location=None):
    """Write a finished rental into the history."""
    end = start + timedelta(hours=hours)
    rental = booking(
        conn,
        world,
        vehicle,
        start=start,
        end=end,
        customer=customer,
        location=location,
        kind="rental",
    )
    blocks.end_block(
        conn, block_id=rental.id, state="completed", changed_by=world.agent.id, reason="x", at=end
    )
    return rental


def _codes(prefs):
    return [p.category_code for p in prefs]


def test_customer_favourite_category_comes_first_with_features_usually_chosen(conn, world):
    with_gps = add_vehicle(conn, world, "B SG 1", category=world.suv, features=("towbar", "gps"))
    plain = add_vehicle(conn, world, "B SG 2", category=world.suv, features=("towbar",))
    seat = add_vehicle(conn, world, "B SG 3", category=world.suv, features=("towbar", "child_seat"))
    small = add_vehicle(conn, world, "B SG 4", features=("gps",))
    _rented(conn, world, with_gps, start=world.at(-900), hours=48, customer=world.alice)
    _rented(conn, world, plain, start=world.at(-500), hours=24, customer=world.alice)
    _rented(conn, world, seat, start=world.at(-300), hours=24, customer=world.alice)
    _rented(conn, world, small, start=world.at(-100), hours=5, customer=world.alice)

    prefs = suggestions.for_customer(conn, customer_id=world.alice.id)

    assert _codes(prefs) == ["SUV", "ECON"]
    assert [p.rentals for p in prefs] == [3, 1]
    assert prefs[0].category_name == "SUV" and prefs[0].category_id == world.suv.id
    assert prefs[0].common_features == ["towbar"]  # gps and the child seat came once in three
    assert prefs[0].last_rented == world.at(-300)
    assert prefs[1].common_features == ["gps"]


def test_customer_history_ignores_cancelled_bookings_and_other_customers(conn, world):
    prem = add_vehicle(conn, world, "B SG 5", category=world.prem)
    small = add_vehicle(conn, world, "B SG 6")
    for k in range(3):
        dropped = booking(
            conn,
            world,
            prem,
            start=world.at(10 + 10 * k),
            end=world.at(12 + 10 * k),
            customer=world.alice,
        )
        rentals.cancel_reservation(conn, block_id=dropped.id, cancelled_by=world.agent.id)
    _rented(conn, world, prem, start=world.at(-50), hours=5, customer=world.bob)
    _rented(conn, world, small, start=world.at(-50), hours=5, customer=world.alice)

    assert _codes(suggestions.for_customer(conn, customer_id=world.alice.id)) == ["ECON"]


def test_upcoming_reservation_counts_as_a_choice_the_customer_made(conn, world):
    suv = add_vehicle(conn, world, "B SG 7", category=world.suv)
    booking(conn, world, suv, start=world.at(5), end=world.at(30), customer=world.alice)

    [pref] = suggestions.for_customer(conn, customer_id=world.alice.id)

    assert (pref.category_code, pref.rentals, pref.last_rented) == ("SUV", 1, world.at(5))


def test_equally_liked_categories_are_ordered_by_most_recent_and_limited(conn, world):
    cars = {
        c.code: add_vehicle(conn, world, f"B SG {c.code}", category=c)
        for c in (world.econ, world.suv, world.prem)
    }
    _rented(conn, world, cars["PREM"], start=world.at(-300), hours=5, customer=world.alice)
    _rented(conn, world, cars["ECON"], start=world.at(-200), hours=5, customer=world.alice)
    _rented(conn, world, cars["SUV"], start=world.at(-100), hours=5, customer=world.alice)

    assert _codes(suggestions.for_customer(conn, customer_id=world.alice.id)) == [
        "SUV",
        "ECON",
        "PREM",
    ]
    assert _codes(suggestions.for_customer(conn, customer_id=world.alice.id, limit=1)) == ["SUV"]


def test_new_customer_has_no_suggestions(conn, world):
    newcomer = fleet.create_customer(conn, name="Nora New")
    assert suggestions.for_customer(conn, customer_id=newcomer.id) == []


def _monday_ahead(world) -> datetime:
    """A Monday 10:00 in Berlin, at least a week after the world's now."""
    day = world.now.astimezone(BERLIN).date() + timedelta(days=7)
    day += timedelta(days=(7 - day.weekday()) % 7)
    return datetime.combine(day, time(10), tzinfo=BERLIN)


@pytest.fixture
def munich_history(conn, world):
    """A year of bookings at Munich: long SUV trips start on Mondays, economy on Tuesdays."""
    monday = _monday_ahead(world)
    suv = add_vehicle(
        conn,
        world,
        "M SG 1",
        category=world.suv,
        location=world.muc,
        features=("towbar", "automatic"),
    )
    econ = add_vehicle(conn, world, "M SG 2", location=world.muc, features=("gps",))
    prem = add_vehicle(conn, world, "M SG 3", category=world.prem, location=world.muc)
    for weeks in (3, 5):
        # 00:30 on a Monday in Berlin is still Sunday in UTC: the lot's weekday counts
        start = datetime.combine(
            (monday - timedelta(weeks=weeks)).date(), time(0, 30), tzinfo=BERLIN
        )
        _rented(conn, world, suv, start=start, hours=60, location=world.muc)
    for weeks in (2, 4, 6):  # Tuesdays, three days
        start = monday - timedelta(weeks=weeks) + timedelta(days=1)
        _rented(conn, world, econ, start=start, hours=72, location=world.muc)
    for weeks in (7, 8):  # Mondays, but a few hours only
        _rented(
            conn, world, econ, start=monday - timedelta(weeks=weeks), hours=3, location=world.muc
        )
    for weeks in (60, 61, 62):  # Mondays, three days, but more than a year ago
        _rented(
            conn, world, prem, start=monday - timedelta(weeks=weeks), hours=72, location=world.muc
        )
    ber = add_vehicle(conn, world, "B SG 8", category=world.prem)
    for weeks in (2, 3, 4):  # Mondays, three days, at the other lot
        _rented(conn, world, ber, start=monday - timedelta(weeks=weeks), hours=72)
    return monday


def test_lot_suggests_what_is_booked_there_on_that_weekday_for_that_long(
    conn, world, munich_history
):
    monday = munich_history

    prefs = suggestions.for_location(
        conn, location_id=world.muc.id, start=monday, end=monday + timedelta(days=3)
    )

    assert _codes(prefs) == ["SUV"]
    assert prefs[0].rentals == 2
    assert prefs[0].common_features == ["automatic", "towbar"]


def test_lot_falls_back_to_all_its_bookings_when_none_are_similar(conn, world, munich_history):
    wednesday = munich_history + timedelta(days=2)

    prefs = suggestions.for_location(
        conn, location_id=world.muc.id, start=wednesday, end=wednesday + timedelta(days=3)
    )

    assert [(p.category_code, p.rentals) for p in prefs] == [("ECON", 5), ("SUV", 2)]
    assert prefs[0].common_features == ["gps"]


def test_short_hire_on_the_lots_monday_matches_the_short_bookings(conn, world, munich_history):
    monday = munich_history

    prefs = suggestions.for_location(
        conn, location_id=world.muc.id, start=monday, end=monday + timedelta(hours=4)
    )

    assert [(p.category_code, p.rentals) for p in prefs] == [("ECON", 2)]


def test_longer_lookback_brings_old_bookings_back(conn, world, munich_history):
    monday = munich_history

    prefs = suggestions.for_location(
        conn,
        location_id=world.muc.id,
        start=monday,
        end=monday + timedelta(days=3),
        lookback=timedelta(days=3 * 365),
    )

    assert [(p.category_code, p.rentals) for p in prefs] == [("PREM", 3), ("SUV", 2)]


def test_lot_without_history_suggests_nothing(conn, world):
    assert (
        suggestions.for_location(
            conn, location_id=world.nyc.id, start=world.at(24), end=world.at(48)
        )
        == []
    )


def test_lot_suggestions_need_a_proper_period(conn, world):
    with pytest.raises(InvalidInput, match="ends before it starts"):
        suggestions.for_location(conn, location_id=world.muc.id, start=world.at(5), end=world.at(1))
