"""Maintenance: service work blocks the car, collides loudly, and frees what it does not use."""

from __future__ import annotations

import pytest

from db import availability, blocks, maintenance, status
from db.errors import BookingConflict, InvalidInput, NotAvailable
from tests.conftest import add_vehicle
from tests.db.factories import booking


def _found(conn, world, start, end, now=None):
    hits = availability.search(
        conn, start=start, end=end, location_id=world.ber.id, now=now or world.now
    )
    return [h.plate for h in hits]


def test_scheduled_service_hides_the_car_from_search_for_its_period_only(conn, world):
    add_vehicle(conn, world, "B MT 1")
    v = add_vehicle(conn, world, "B MT 2")

    work = maintenance.schedule_maintenance(
        conn,
        vehicle_id=v.id,
        start=world.at(4),
        end=world.at(8),
        created_by=world.agent.id,
        reference="WO-17",
        notes="brakes",
    )

    assert (work.kind, work.reference, work.start_location_id) == (
        "maintenance",
        "WO-17",
        world.ber.id,
    )
    assert _found(conn, world, world.at(5), world.at(6)) == ["B MT 1"]
    assert _found(conn, world, world.at(2), world.at(4.5)) == ["B MT 1"]
    # service work needs no cleaning buffer: the car is bookable right when it ends
    assert "B MT 2" in _found(conn, world, world.at(8), world.at(12))
    assert status.get_status(conn, vehicle_id=v.id).status == "available"


def test_service_over_a_reservation_is_refused_naming_the_booking(conn, world):
    v = add_vehicle(conn, world, "B MT 3")
    res = booking(conn, world, v, start=world.at(6), end=world.at(10))

    with pytest.raises(BookingConflict) as err:
        maintenance.schedule_maintenance(
            conn, vehicle_id=v.id, start=world.at(9), end=world.at(12), created_by=world.agent.id
        )

    [blocking] = err.value.details["blocking"]
    assert (blocking["id"], blocking["kind"], blocking["customer_name"]) == (
        res.id,
        "reservation",
        "Bob Meyer",
    )
    assert f"reservation #{res.id}" in err.value.message and "Bob Meyer" in err.value.message


def test_service_during_the_cleaning_buffer_after_a_booking_is_refused(conn, world):
    v = add_vehicle(conn, world, "B MT 4")
    res = booking(conn, world, v, start=world.at(2), end=world.at(5))  # econ: 30 min buffer

    with pytest.raises(BookingConflict) as err:
        maintenance.schedule_maintenance(
            conn, vehicle_id=v.id, start=world.at(5.25), end=world.at(8), created_by=world.agent.id
        )
    assert [b["id"] for b in err.value.details["blocking"]] == [res.id]
    assert maintenance.schedule_maintenance(
        conn, vehicle_id=v.id, start=world.at(5.5), end=world.at(8), created_by=world.agent.id
    ).start == world.at(5.5)


def test_service_is_booked_at_the_lot_the_car_will_be_on(conn, world):
    v = add_vehicle(conn, world, "B MT 5")
    booking(conn, world, v, start=world.at(1), end=world.at(5), return_location=world.muc)

    work = maintenance.schedule_maintenance(
        conn, vehicle_id=v.id, start=world.at(8), end=world.at(12), created_by=world.agent.id
    )

    assert (work.start_location_id, work.end_location_id) == (world.muc.id, world.muc.id)


def test_service_cannot_be_planned_for_a_car_that_is_on_no_lot(conn, world):
    v = add_vehicle(conn, world, "B MT 6")
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
        maintenance.schedule_maintenance(
            conn, vehicle_id=v.id, start=world.at(4), end=world.at(6), created_by=world.agent.id
        )


def test_starting_service_puts_the_car_in_maintenance_until_the_planned_end(conn, world):
    v = add_vehicle(conn, world, "B MT 7")
    work = maintenance.schedule_maintenance(
        conn,
        vehicle_id=v.id,
        start=world.at(1),
        end=world.at(6),
        created_by=world.agent.id,
        reference="WO-18",
    )

    started = maintenance.start_maintenance(
        conn, block_id=work.id, changed_by=world.agent.id, at=world.at(1)
    )

    assert started.started_at == world.at(1)
    now = status.get_status(conn, vehicle_id=v.id)
    assert (now.status, now.expected_available_at, now.location_code) == (
        "maintenance",
        world.at(6),
        "BER1",
    )
    assert now.whereabouts == "in maintenance at BER1"
    log = conn.exec_driver_sql(
        "SELECT change_reason FROM vehicle_status_log WHERE vehicle_id = %s ORDER BY id DESC",
        (v.id,),
    ).scalar()
    assert log == f"maintenance #{work.id} started (WO-18)"


def test_finishing_early_frees_the_rest_of_the_period_at_once(conn, world):
    v = add_vehicle(conn, world, "B MT 8")
    work = maintenance.schedule_maintenance(
        conn, vehicle_id=v.id, start=world.at(1), end=world.at(10), created_by=world.agent.id
    )
    maintenance.start_maintenance(conn, block_id=work.id, changed_by=world.agent.id, at=world.at(1))
    assert _found(conn, world, world.at(4), world.at(8)) == []

    done = maintenance.complete_maintenance(
        conn, block_id=work.id, changed_by=world.agent.id, at=world.at(3)
    )

    assert (done.state, done.end, done.finished_at) == ("completed", world.at(3), world.at(3))
    assert status.get_status(conn, vehicle_id=v.id).status == "available"
    assert _found(conn, world, world.at(3), world.at(8), now=world.at(3)) == ["B MT 8"]
    with pytest.raises(InvalidInput, match="not open maintenance"):
        maintenance.complete_maintenance(conn, block_id=work.id, changed_by=world.agent.id)


def test_completing_service_that_never_started_leaves_the_status_alone(conn, world):
    v = add_vehicle(conn, world, "B MT 9")
    work = maintenance.schedule_maintenance(
        conn, vehicle_id=v.id, start=world.at(1), end=world.at(10), created_by=world.agent.id
    )
    before = status.get_status(conn, vehicle_id=v.id).version

    maintenance.complete_maintenance(
        conn, block_id=work.id, changed_by=world.agent.id, at=world.at(2)
    )

    after = status.get_status(conn, vehicle_id=v.id)
    assert (after.status, after.version) == ("available", before)


def test_cancelled_service_gives_the_whole_period_back(conn, world):
    v = add_vehicle(conn, world, "B MT 10")
    work = maintenance.schedule_maintenance(
        conn, vehicle_id=v.id, start=world.at(2), end=world.at(8), created_by=world.agent.id
    )

    gone = maintenance.cancel_maintenance(conn, block_id=work.id, changed_by=world.agent.id)

    assert gone.state == "cancelled"
    assert _found(conn, world, world.at(2), world.at(8)) == ["B MT 10"]
    assert blocks.vehicle_blocks(conn, vehicle_id=v.id) == []


def test_service_already_under_way_cannot_be_cancelled(conn, world):
    v = add_vehicle(conn, world, "B MT 11")
    work = maintenance.schedule_maintenance(
        conn, vehicle_id=v.id, start=world.at(1), end=world.at(8), created_by=world.agent.id
    )
    maintenance.start_maintenance(conn, block_id=work.id, changed_by=world.agent.id, at=world.at(1))

    with pytest.raises(InvalidInput, match="already started") as err:
        maintenance.cancel_maintenance(conn, block_id=work.id, changed_by=world.agent.id)
    assert err.value.hint == "complete it instead"
    assert blocks.get_block(conn, block_id=work.id).state == "active"


def test_maintenance_functions_refuse_other_bookings(conn, world):
    v = add_vehicle(conn, world, "B MT 12")
    res = booking(conn, world, v, start=world.at(1), end=world.at(4))

    for action in (
        maintenance.start_maintenance,
        maintenance.complete_maintenance,
        maintenance.cancel_maintenance,
    ):
        with pytest.raises(InvalidInput, match="not open maintenance"):
            action(conn, block_id=res.id, changed_by=world.agent.id)
    assert blocks.get_block(conn, block_id=res.id).state == "active"


def test_service_period_must_be_ordered(conn, world):
    v = add_vehicle(conn, world, "B MT 13")
    with pytest.raises(InvalidInput, match="ends before it starts"):
        maintenance.schedule_maintenance(
            conn, vehicle_id=v.id, start=world.at(5), end=world.at(5), created_by=world.agent.id
        )
