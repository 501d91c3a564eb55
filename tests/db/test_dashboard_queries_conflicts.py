"""Read queries the conflicts page needs: ways out for the booking a feed record hit."""

from __future__ import annotations

from datetime import timedelta

from db import conflicts, holds, rentals
from tests.conftest import add_vehicle
from tests.db.factories import booking, rental_under_way


def test_booking_in_a_feeds_way_gets_swaps_and_upgrades_for_its_own_period(conn, world):
    car = add_vehicle(conn, world, "B DQ 1")
    spare = add_vehicle(conn, world, "B DQ 2")
    busy = add_vehicle(conn, world, "B DQ 3")
    bigger = add_vehicle(conn, world, "B DQ 4", category=world.suv)
    in_the_way = booking(conn, world, car, start=world.at(5), end=world.at(9))
    # B DQ 3 is free before and after, but not for the booking's own period.
    booking(conn, world, busy, start=world.at(6), end=world.at(7), customer=world.alice)

    ways = conflicts.suggest_for_booking(conn, block_id=in_the_way.id, now=world.now)

    assert [(s.action, s.plate) for s in ways] == [("swap", spare.plate), ("upgrade", bigger.plate)]
    assert car.id not in {s.vehicle_id for s in ways}


def test_bookings_that_cannot_be_swapped_get_no_ways_out(conn, world):
    car = add_vehicle(conn, world, "B DQ 5")
    add_vehicle(conn, world, "B DQ 6")
    under_way = rental_under_way(conn, world, car, start=world.at(-3), end=world.at(3))
    cancelled = booking(conn, world, car, start=world.at(30), end=world.at(34))
    rentals.cancel_reservation(conn, block_id=cancelled.id, cancelled_by=world.agent.id)
    held = holds.place_hold(
        conn,
        vehicle_id=add_vehicle(conn, world, "B DQ 7").id,
        start=world.at(20),
        end=world.at(24),
        location_id=world.ber.id,
        held_by=world.agent.id,
        ttl=timedelta(minutes=90),
    )

    assert conflicts.suggest_for_booking(conn, block_id=under_way.id, now=world.now) == []
    assert conflicts.suggest_for_booking(conn, block_id=cancelled.id, now=world.now) == []
    assert conflicts.suggest_for_booking(conn, block_id=held.id, now=world.now) != []
    # world.now is at most an hour ahead, so the 90-minute hold has run out two hours on.
    assert conflicts.suggest_for_booking(conn, block_id=held.id, now=world.at(2)) == []
