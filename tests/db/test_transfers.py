"""Transfers: driving time, schedule, dispatch and arrival, and where the car can be found."""

from __future__ import annotations

from datetime import timedelta

import pytest

from db import availability, blocks, fleet, rentals, status, transfers
from db.errors import BookingConflict, InvalidInput, NotAvailable
from tests.conftest import add_vehicle
from tests.db.factories import booking


def _to_munich(conn, world, vehicle):
    """Schedule the vehicle's transfer from Berlin to Munich, leaving in an hour."""
    return transfers.schedule_transfer(
        conn,
        vehicle_id=vehicle.id,
        to_location_id=world.muc.id,
        depart_at=world.at(1),
        created_by=world.agent.id,
    )


def _found(conn, world, location, start, end, now=None):
    hits = availability.search(
        conn, start=start, end=end, location_id=location.id, now=now or world.now
    )
    return [h.plate for h in hits]


def test_transfer_within_one_location_takes_no_time(world):
    assert transfers.transfer_duration(world.ber, world.ber) == timedelta(0)


def test_driving_time_between_lots_is_plausible_and_symmetric(world):
    there = transfers.transfer_duration(world.ber, world.muc)

    # about 500 km as the crow flies, 650 km of road: ten hours with handling, in quarters
    assert timedelta(hours=8) <= there <= timedelta(hours=12)
    assert there.total_seconds() % (15 * 60) == 0
    assert transfers.transfer_duration(world.muc, world.ber) == there
    assert 480 < transfers.distance_km(world.ber, world.muc) < 530


def test_nearby_lots_take_handling_plus_a_short_drive(conn, world):
    city = fleet.create_location(
        conn,
        code="BER2",
        name="Berlin Mitte",
        time_zone="Europe/Berlin",
        latitude=52.5200,
        longitude=13.4050,
    )

    assert transfers.transfer_duration(world.ber, city) == timedelta(minutes=30 + 30)


def test_unknown_coordinates_assume_four_hours(conn, world):
    somewhere = fleet.create_location(
        conn, code="POP1", name="Pop-up lot", time_zone="Europe/Berlin"
    )

    assert transfers.distance_km(world.ber, somewhere) is None
    assert transfers.transfer_duration(world.ber, somewhere) == timedelta(hours=4)
    assert transfers.transfer_duration(somewhere, world.muc) == timedelta(hours=4)


def test_scheduled_transfer_runs_from_where_the_car_is_with_an_estimated_eta(conn, world):
    v = add_vehicle(conn, world, "B TR 1")

    t = transfers.schedule_transfer(
        conn,
        vehicle_id=v.id,
        to_location_id=world.muc.id,
        depart_at=world.at(2),
        created_by=world.agent.id,
        reference="TR-1",
    )

    drive = transfers.transfer_duration(world.ber, world.muc)
    assert (t.kind, t.state, t.reference) == ("transfer", "active", "TR-1")
    assert (t.start_location_id, t.end_location_id) == (world.ber.id, world.muc.id)
    assert (t.start, t.end) == (world.at(2), world.at(2) + drive)
    assert t.blocked_until == t.end  # no cleaning buffer after a transfer


def test_car_is_offered_at_the_destination_after_eta_and_no_longer_at_the_origin(conn, world):
    v = add_vehicle(conn, world, "B TR 2")
    t = transfers.schedule_transfer(
        conn,
        vehicle_id=v.id,
        to_location_id=world.muc.id,
        depart_at=world.at(2),
        created_by=world.agent.id,
    )
    later = (t.end + timedelta(hours=1), t.end + timedelta(hours=10))

    assert _found(conn, world, world.muc, *later) == ["B TR 2"]
    assert _found(conn, world, world.ber, *later) == []
    # before the ETA it is on the road, and before departure it is still in Berlin
    assert _found(conn, world, world.muc, t.end - timedelta(hours=1), later[1]) == []
    assert _found(conn, world, world.ber, world.at(0.5), world.at(1.5)) == ["B TR 2"]


def test_dispatch_puts_the_car_in_transit_with_destination_and_eta(conn, world):
    v = add_vehicle(conn, world, "B TR 3")
    t = _to_munich(conn, world, v)

    left = transfers.dispatch(conn, block_id=t.id, changed_by=world.agent.id, at=world.at(1))

    assert left.started_at == world.at(1)
    now = status.get_status(conn, vehicle_id=v.id)
    assert (now.status, now.destination_code, now.expected_available_at) == (
        "in_transit",
        "MUC1",
        t.end,
    )
    assert now.whereabouts == "in transit to MUC1"
    assert now.block_id == t.id
    with pytest.raises(InvalidInput, match="already departed"):
        transfers.dispatch(conn, block_id=t.id, changed_by=world.agent.id)


def test_arrival_makes_the_car_available_at_its_new_lot(conn, world):
    v = add_vehicle(conn, world, "B TR 4")
    t = _to_munich(conn, world, v)
    transfers.dispatch(conn, block_id=t.id, changed_by=world.agent.id, at=world.at(1))

    done = transfers.arrive(conn, block_id=t.id, changed_by=world.agent.id, at=world.at(9))

    assert (done.state, done.finished_at, done.end) == ("completed", world.at(9), world.at(9))
    now = status.get_status(conn, vehicle_id=v.id)
    assert (now.status, now.location_code, now.destination_location_id) == (
        "available",
        "MUC1",
        None,
    )
    # arriving early frees the car at Munich from then on
    assert _found(conn, world, world.muc, world.at(9.5), world.at(12), now=world.at(9)) == [
        "B TR 4"
    ]
    with pytest.raises(InvalidInput, match="already completed"):
        transfers.arrive(conn, block_id=t.id, changed_by=world.agent.id)


def test_arrival_without_a_recorded_departure_records_both(conn, world):
    v = add_vehicle(conn, world, "B TR 5")
    t = _to_munich(conn, world, v)

    done = transfers.arrive(conn, block_id=t.id, changed_by=world.agent.id, at=world.at(11))

    assert (done.started_at, done.finished_at) == (world.at(1), world.at(11))
    assert status.get_status(conn, vehicle_id=v.id).location_code == "MUC1"


def test_customer_can_book_the_car_at_the_destination_after_arrival_time(conn, world):
    v = add_vehicle(conn, world, "B TR 6")
    t = _to_munich(conn, world, v)

    res = rentals.reserve(
        conn,
        vehicle_id=v.id,
        start=t.end + timedelta(hours=2),
        end=t.end + timedelta(hours=8),
        pickup_location_id=world.muc.id,
        customer_id=world.alice.id,
        booked_by=world.agent.id,
    )

    assert res.start_location_id == world.muc.id
    with pytest.raises(NotAvailable, match="will be at MUC1, not BER1"):
        rentals.reserve(
            conn,
            vehicle_id=v.id,
            start=t.end + timedelta(hours=20),
            end=t.end + timedelta(hours=30),
            pickup_location_id=world.ber.id,
            customer_id=world.bob.id,
            booked_by=world.agent.id,
        )


def test_transfer_to_where_the_car_already_is_is_refused(conn, world):
    v = add_vehicle(conn, world, "B TR 7")

    with pytest.raises(InvalidInput, match="already at that location") as err:
        transfers.schedule_transfer(
            conn,
            vehicle_id=v.id,
            to_location_id=world.ber.id,
            depart_at=world.at(1),
            created_by=world.agent.id,
        )
    assert err.value.field == "to_location_id"


def test_transfer_over_a_booking_is_refused_naming_it(conn, world):
    v = add_vehicle(conn, world, "B TR 8")
    res = booking(conn, world, v, start=world.at(5), end=world.at(9))

    with pytest.raises(BookingConflict) as err:
        transfers.schedule_transfer(
            conn,
            vehicle_id=v.id,
            to_location_id=world.muc.id,
            depart_at=world.at(1),
            created_by=world.agent.id,
        )
    assert [b["id"] for b in err.value.details["blocking"]] == [res.id]


def test_transfer_times_must_carry_a_time_zone(conn, world):
    v = add_vehicle(conn, world, "B TR 9")
    with pytest.raises(InvalidInput, match="no time zone"):
        transfers.schedule_transfer(
            conn,
            vehicle_id=v.id,
            to_location_id=world.muc.id,
            depart_at=world.at(1).replace(tzinfo=None),
            created_by=world.agent.id,
        )


def test_only_open_transfers_can_depart_or_arrive(conn, world):
    v = add_vehicle(conn, world, "B TR 10")
    res = booking(conn, world, v, start=world.at(5), end=world.at(9))

    with pytest.raises(InvalidInput, match="not a transfer"):
        transfers.dispatch(conn, block_id=res.id, changed_by=world.agent.id)
    with pytest.raises(InvalidInput, match="not a transfer"):
        transfers.arrive(conn, block_id=res.id, changed_by=world.agent.id)


def test_transfer_list_shows_lateness_of_cars_still_on_the_road(conn, world):
    on_time = add_vehicle(conn, world, "B TR 11")
    late = add_vehicle(conn, world, "B TR 12")
    soon = _to_munich(conn, world, on_time)
    overdue = transfers.schedule_transfer(
        conn,
        vehicle_id=late.id,
        to_location_id=world.muc.id,
        depart_at=world.at(-14),
        eta=world.at(-3),
        created_by=world.agent.id,
    )
    transfers.dispatch(conn, block_id=overdue.id, changed_by=world.agent.id, at=world.at(-14))

    rows = {t.plate: t for t in transfers.list_transfers(conn)}

    assert list(rows) == ["B TR 12", "B TR 11"]  # by ETA
    assert rows["B TR 11"].late_by is None and rows["B TR 11"].departed_at is None
    assert (rows["B TR 11"].from_code, rows["B TR 11"].to_code) == ("BER1", "MUC1")
    assert rows["B TR 11"].eta == soon.end
    # world.now is up to an hour ahead of the database clock, so the car is 2-3 h late
    assert timedelta(hours=2) <= rows["B TR 12"].late_by <= timedelta(hours=3)
    assert rows["B TR 12"].departed_at == world.at(-14)


def test_finished_transfers_show_only_when_asked_with_how_late_they_arrived(conn, world):
    v = add_vehicle(conn, world, "B TR 13")
    t = transfers.schedule_transfer(
        conn,
        vehicle_id=v.id,
        to_location_id=world.muc.id,
        depart_at=world.at(-20),
        eta=world.at(-12),
        created_by=world.agent.id,
    )
    transfers.arrive(conn, block_id=t.id, changed_by=world.agent.id, at=world.at(-10))

    assert transfers.list_transfers(conn) == []
    [done] = transfers.list_transfers(conn, include_done_since=world.at(-11))
    assert (done.state, done.arrived_at, done.late_by) == (
        "completed",
        world.at(-10),
        timedelta(hours=2),
    )
    assert transfers.list_transfers(conn, include_done_since=world.at(-9)) == []


def test_transfer_list_filters_by_either_end(conn, world):
    a = add_vehicle(conn, world, "B TR 14")
    b = add_vehicle(conn, world, "J TR 15", location=world.nyc)
    transfers.schedule_transfer(
        conn,
        vehicle_id=a.id,
        to_location_id=world.muc.id,
        depart_at=world.at(1),
        created_by=world.agent.id,
    )
    nyc_lot = fleet.create_location(
        conn,
        code="EWR1",
        name="Newark",
        time_zone="America/New_York",
        latitude=40.6895,
        longitude=-74.1745,
    )
    transfers.schedule_transfer(
        conn,
        vehicle_id=b.id,
        to_location_id=nyc_lot.id,
        depart_at=world.at(1),
        created_by=world.agent.id,
    )

    assert [t.plate for t in transfers.list_transfers(conn, location_id=world.muc.id)] == [
        "B TR 14"
    ]
    assert [t.plate for t in transfers.list_transfers(conn, location_id=world.nyc.id)] == [
        "J TR 15"
    ]
    assert [t.to_code for t in transfers.list_transfers(conn, location_id=world.ber.id)] == ["MUC1"]
    assert blocks.vehicle_blocks(conn, vehicle_id=b.id)[0].end_location_id == nyc_lot.id


def test_car_on_no_lot_cannot_be_sent_anywhere(conn, world):
    v = add_vehicle(conn, world, "B TR 16")
    status.change_status(
        conn,
        vehicle_id=v.id,
        new_status="rented",
        changed_by=world.agent.id,
        reason="handed out on the road, no lot",
        customer_id=world.alice.id,
        expected_available_at=world.at(2),
        location_id=None,
    )

    with pytest.raises(NotAvailable, match="not on a lot"):
        transfers.schedule_transfer(
            conn,
            vehicle_id=v.id,
            to_location_id=world.muc.id,
            depart_at=world.at(4),
            created_by=world.agent.id,
        )


def test_early_departure_moves_the_start_so_an_early_arrival_can_be_recorded(conn, world):
    v = add_vehicle(conn, world, "B TR 60")
    t = _to_munich(conn, world, v)
    left = transfers.dispatch(conn, block_id=t.id, changed_by=world.agent.id, at=world.at(0.5))
    assert left.start == world.at(0.5)
    arrived = transfers.arrive(conn, block_id=t.id, changed_by=world.agent.id, at=world.at(0.9))
    assert arrived.state == "completed"
