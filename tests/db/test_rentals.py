"""Rentals: reserve, pick up, extend, return early or late, and scheduled vs actual returns."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from db import availability, blocks, fleet, rentals, status
from db.errors import BookingConflict, InvalidInput, InvalidTransition, NotAvailable, NotFound
from tests.conftest import add_vehicle
from tests.db.factories import booking, rental_under_way


def _found(conn, world, start, end, now=None, location=None):
    hits = availability.search(
        conn, start=start, end=end, location_id=(location or world.ber).id, now=now or world.now
    )
    return [h.plate for h in hits]


def _reserve(conn, world, vehicle, start, end, customer=None, **kw):
    return rentals.reserve(
        conn,
        vehicle_id=vehicle.id,
        start=start,
        end=end,
        pickup_location_id=kw.pop("pickup", world.ber).id,
        customer_id=(customer or world.alice).id,
        booked_by=world.agent.id,
        **kw,
    )


def _events(conn, vehicle_id, kind):
    return (
        conn.execute(
            text("SELECT payload FROM availability_events WHERE vehicle_id = :v AND kind = :k"),
            {"v": vehicle_id, "k": kind},
        )
        .scalars()
        .all()
    )


def test_reservation_books_the_car_for_the_customer_and_hides_it_from_search(conn, world):
    v = add_vehicle(conn, world, "B RN 1")

    res = _reserve(
        conn,
        world,
        v,
        world.at(2),
        world.at(26),
        reference="R-100",
        return_location_id=world.muc.id,
    )

    assert (res.kind, res.state, res.customer_name, res.reference) == (
        "reservation",
        "active",
        "Alice Schmidt",
        "R-100",
    )
    assert (res.start_location_id, res.end_location_id) == (world.ber.id, world.muc.id)
    assert res.blocked_until == world.at(26.5)  # economy prep buffer
    assert _found(conn, world, world.at(10), world.at(12)) == []
    assert [e["id"] for e in _events(conn, v.id, "reservation_created")] == [res.id]
    assert status.get_status(conn, vehicle_id=v.id).status == "available"


def test_reserving_a_taken_car_is_refused_naming_the_booking(conn, world):
    v = add_vehicle(conn, world, "B RN 2")
    first = _reserve(conn, world, v, world.at(2), world.at(6))

    with pytest.raises(BookingConflict) as err:
        _reserve(conn, world, v, world.at(6.25), world.at(9), customer=world.bob)

    assert [b["id"] for b in err.value.details["blocking"]] == [first.id]
    assert "Alice Schmidt" in err.value.message


def test_reserving_a_car_that_cannot_be_handed_out_is_refused(conn, world):
    broken = add_vehicle(conn, world, "B RN 3")
    status.change_status(
        conn,
        vehicle_id=broken.id,
        new_status="out_of_service",
        changed_by=world.agent.id,
        reason="accident",
    )
    away = add_vehicle(conn, world, "M RN 4", location=world.muc)
    late = add_vehicle(conn, world, "B RN 5")
    rental_under_way(conn, world, late, start=world.at(-10), end=world.at(-2))

    with pytest.raises(NotAvailable, match="out of service"):
        _reserve(conn, world, broken, world.at(2), world.at(5))
    with pytest.raises(NotAvailable, match="will be at MUC1, not BER1"):
        _reserve(conn, world, away, world.at(2), world.at(5))
    with pytest.raises(NotAvailable, match="not back yet"):
        _reserve(conn, world, late, world.at(20), world.at(25))


def test_pick_up_hands_the_car_to_the_customer_until_the_booked_end(conn, world):
    v = add_vehicle(conn, world, "B RN 6")
    res = _reserve(conn, world, v, world.at(1), world.at(25))

    rental = rentals.pick_up(conn, block_id=res.id, handed_over_by=world.agent.id, at=world.at(1))

    assert (rental.id, rental.kind, rental.started_at) == (res.id, "rental", world.at(1))
    now = status.get_status(conn, vehicle_id=v.id)
    assert (now.status, now.customer_name, now.customer_phone) == (
        "rented",
        "Alice Schmidt",
        "+49 30 1234567",
    )
    assert (now.expected_available_at, now.block_id) == (world.at(25), res.id)
    assert now.whereabouts == "with customer"
    with pytest.raises(InvalidInput, match="not an open reservation"):
        rentals.pick_up(conn, block_id=res.id, handed_over_by=world.agent.id)


def test_next_customer_picks_up_once_the_previous_returns_prep_time_is_over(conn, world):
    v = add_vehicle(conn, world, "B RN 7")
    first = _reserve(conn, world, v, world.at(1), world.at(5))
    second = _reserve(conn, world, v, world.at(6), world.at(9), customer=world.bob)
    rentals.pick_up(conn, block_id=first.id, handed_over_by=world.agent.id, at=world.at(1))
    rentals.return_vehicle(conn, block_id=first.id, received_by=world.agent.id, at=world.at(5))
    assert status.get_status(conn, vehicle_id=v.id).status == "cleaning"

    rentals.pick_up(conn, block_id=second.id, handed_over_by=world.agent.id, at=world.at(6))

    now = status.get_status(conn, vehicle_id=v.id)
    assert (now.status, now.customer_name, now.expected_available_at) == (
        "rented",
        "Bob Meyer",
        world.at(9),
    )


def test_car_still_being_prepared_cannot_be_handed_out(conn, world):
    v = add_vehicle(conn, world, "B RN 8")
    first = _reserve(conn, world, v, world.at(1), world.at(5))
    second = _reserve(conn, world, v, world.at(6), world.at(9), customer=world.bob)
    rentals.pick_up(conn, block_id=first.id, handed_over_by=world.agent.id, at=world.at(1))
    # a late return eats the prep time: the car is only clean again at 7.5 h
    rentals.return_vehicle(conn, block_id=first.id, received_by=world.agent.id, at=world.at(7))

    with pytest.raises(InvalidTransition, match="cleaning"):
        rentals.pick_up(conn, block_id=second.id, handed_over_by=world.agent.id, at=world.at(7))
    assert blocks.get_block(conn, block_id=second.id).kind == "reservation"


def test_extension_into_the_next_booking_is_refused_naming_it(conn, world):
    v = add_vehicle(conn, world, "B RN 9")
    rental = rental_under_way(conn, world, v, start=world.at(-2), end=world.at(5))
    nxt = booking(conn, world, v, start=world.at(8), end=world.at(12))

    with pytest.raises(BookingConflict) as err:
        rentals.extend_rental(
            conn, block_id=rental.id, new_end=world.at(7.75), extended_by=world.agent.id
        )

    [blocking] = err.value.details["blocking"]
    assert (blocking["id"], blocking["customer_name"]) == (nxt.id, "Bob Meyer")
    assert blocks.get_block(conn, block_id=rental.id).end == world.at(5)
    assert status.get_status(conn, vehicle_id=v.id).expected_available_at == world.at(5)


def test_extension_that_fits_moves_the_expected_return(conn, world):
    v = add_vehicle(conn, world, "B RN 10")
    rental = rental_under_way(conn, world, v, start=world.at(-2), end=world.at(5))
    booking(conn, world, v, start=world.at(8), end=world.at(12))

    longer = rentals.extend_rental(
        conn, block_id=rental.id, new_end=world.at(7.5), extended_by=world.agent.id
    )

    assert (longer.end, longer.scheduled_end, longer.blocked_until) == (
        world.at(7.5),
        world.at(7.5),
        world.at(8),
    )
    now = status.get_status(conn, vehicle_id=v.id)
    assert (now.status, now.expected_available_at, now.customer_id) == (
        "rented",
        world.at(7.5),
        world.alice.id,
    )
    [event] = _events(conn, v.id, "rental_extended")
    assert event["previous_end"] == world.at(5).isoformat()


def test_reservation_not_yet_picked_up_can_be_lengthened(conn, world):
    v = add_vehicle(conn, world, "B RN 11")
    res = _reserve(conn, world, v, world.at(2), world.at(5))

    longer = rentals.extend_rental(
        conn, block_id=res.id, new_end=world.at(9), extended_by=world.agent.id
    )

    assert (longer.kind, longer.end) == ("reservation", world.at(9))
    assert status.get_status(conn, vehicle_id=v.id).status == "available"
    assert _found(conn, world, world.at(8), world.at(9)) == []


def test_extension_needs_an_open_rental_and_a_proper_time(conn, world):
    v = add_vehicle(conn, world, "B RN 12")
    rental = rental_under_way(conn, world, v, start=world.at(-2), end=world.at(5))

    with pytest.raises(InvalidInput, match="no time zone"):
        rentals.extend_rental(
            conn,
            block_id=rental.id,
            new_end=world.at(9).replace(tzinfo=None),
            extended_by=world.agent.id,
        )
    with pytest.raises(InvalidInput, match="ends before it starts"):
        rentals.extend_rental(
            conn, block_id=rental.id, new_end=world.at(-3), extended_by=world.agent.id
        )
    rentals.return_vehicle(conn, block_id=rental.id, received_by=world.agent.id, at=world.at(1))
    with pytest.raises(InvalidInput, match="not an open rental"):
        rentals.extend_rental(
            conn, block_id=rental.id, new_end=world.at(9), extended_by=world.agent.id
        )


def test_early_return_frees_the_rest_of_the_booking_after_the_prep_buffer(conn, world):
    v = add_vehicle(conn, world, "B RN 13")
    res = _reserve(conn, world, v, world.at(1), world.at(25))
    rentals.pick_up(conn, block_id=res.id, handed_over_by=world.agent.id, at=world.at(1))

    back = rentals.return_vehicle(conn, block_id=res.id, received_by=world.agent.id, at=world.at(3))

    assert (back.state, back.end, back.finished_at, back.blocked_until) == (
        "completed",
        world.at(3),
        world.at(3),
        world.at(3.5),
    )
    now = status.get_status(conn, vehicle_id=v.id)
    assert (now.status, now.expected_available_at, now.customer_id) == (
        "cleaning",
        world.at(3.5),
        None,
    )
    assert _found(conn, world, world.at(3.5), world.at(20), now=world.at(3)) == ["B RN 13"]
    assert _found(conn, world, world.at(3.25), world.at(20), now=world.at(3)) == []
    # the next customer can book the freed hours right away
    _reserve(conn, world, v, world.at(4), world.at(20), customer=world.bob)


def test_late_return_is_recorded_even_though_the_next_booking_has_begun(conn, world):
    v = add_vehicle(conn, world, "B RN 14")
    first = _reserve(conn, world, v, world.at(1), world.at(5))
    nxt = _reserve(conn, world, v, world.at(6), world.at(10), customer=world.bob)
    rentals.pick_up(conn, block_id=first.id, handed_over_by=world.agent.id, at=world.at(1))

    back = rentals.return_vehicle(
        conn, block_id=first.id, received_by=world.agent.id, at=world.at(7)
    )

    assert (back.state, back.finished_at, back.scheduled_end) == (
        "completed",
        world.at(7),
        world.at(5),
    )
    assert back.blocked_until <= world.at(6)  # cut short where Bob's booking begins
    kept = blocks.get_block(conn, block_id=nxt.id)
    assert (kept.state, kept.start) == ("active", world.at(6))
    [row] = rentals.returns_report(conn, since=world.at(5), until=world.at(6))
    assert (row.actual_return, row.late_by, row.on_time) == (
        world.at(7),
        timedelta(hours=2),
        False,
    )


def test_return_to_another_lot_with_damage_and_odometer(conn, world):
    v = add_vehicle(conn, world, "B RN 15", odometer_km=10_000)
    rental = rental_under_way(conn, world, v, start=world.at(-5), end=world.at(5))

    back = rentals.return_vehicle(
        conn,
        block_id=rental.id,
        received_by=world.agent.id,
        at=world.at(-1),
        location_id=world.muc.id,
        odometer_km=10_640,
        needs_maintenance=True,
        notes="dented door",
    )

    assert back.end_location_id == world.muc.id
    now = status.get_status(conn, vehicle_id=v.id)
    assert (now.status, now.location_code, now.expected_available_at) == (
        "maintenance",
        "MUC1",
        None,
    )
    assert fleet.get_vehicle(conn, id=v.id).odometer_km == 10_640
    reason = conn.exec_driver_sql(
        "SELECT change_reason FROM vehicle_status_log WHERE vehicle_id = %s ORDER BY id DESC",
        (v.id,),
    ).scalar()
    assert reason == f"rental #{rental.id} returned: dented door"


def test_odometer_never_runs_backwards_and_negative_readings_are_refused(conn, world):
    v = add_vehicle(conn, world, "B RN 16", odometer_km=10_000)
    rental = rental_under_way(conn, world, v, start=world.at(-5), end=world.at(5))

    with pytest.raises(InvalidInput, match="negative"):
        rentals.return_vehicle(
            conn, block_id=rental.id, received_by=world.agent.id, at=world.at(-1), odometer_km=-5
        )
    assert blocks.get_block(conn, block_id=rental.id).state == "active"
    assert status.get_status(conn, vehicle_id=v.id).status == "rented"

    rentals.return_vehicle(
        conn, block_id=rental.id, received_by=world.agent.id, at=world.at(-1), odometer_km=9_000
    )
    assert fleet.get_vehicle(conn, id=v.id).odometer_km == 10_000


def test_only_open_rentals_can_be_returned(conn, world):
    v = add_vehicle(conn, world, "B RN 17")
    res = _reserve(conn, world, v, world.at(1), world.at(5))

    with pytest.raises(InvalidInput, match="not an open rental"):
        rentals.return_vehicle(conn, block_id=res.id, received_by=world.agent.id)


def test_returns_report_compares_actual_with_scheduled_returns(conn, world):
    early = add_vehicle(conn, world, "B RN 18")
    late = add_vehicle(conn, world, "B RN 19")
    out = add_vehicle(conn, world, "B RN 20")
    elsewhere = add_vehicle(conn, world, "M RN 21", location=world.muc)
    a = rental_under_way(conn, world, early, start=world.at(-30), end=world.at(-20))
    rentals.return_vehicle(conn, block_id=a.id, received_by=world.agent.id, at=world.at(-21))
    b = rental_under_way(
        conn, world, late, start=world.at(-30), end=world.at(-15), customer=world.bob
    )
    rentals.return_vehicle(conn, block_id=b.id, received_by=world.agent.id, at=world.at(-12))
    rental_under_way(conn, world, out, start=world.at(-30), end=world.at(-10))
    rental_under_way(
        conn, world, elsewhere, start=world.at(-30), end=world.at(-11), location=world.muc
    )
    rental_under_way(
        conn, world, add_vehicle(conn, world, "B RN 22"), start=world.at(-5), end=world.at(30)
    )

    rows = rentals.returns_report(
        conn, since=world.at(-24), until=world.at(-9), location_id=world.ber.id
    )

    assert [(r.plate, r.customer_name) for r in rows] == [
        ("B RN 18", "Alice Schmidt"),
        ("B RN 19", "Bob Meyer"),
        ("B RN 20", "Alice Schmidt"),
    ]
    on_time, was_late, still_out = rows
    assert (on_time.scheduled_return, on_time.actual_return) == (world.at(-20), world.at(-21))
    assert (on_time.on_time, on_time.late_by, on_time.state) == (True, None, "completed")
    assert (was_late.on_time, was_late.late_by) == (False, timedelta(hours=3))
    assert (still_out.state, still_out.actual_return, still_out.on_time) == ("active", None, None)
    # still out 10 h after it was due (the world's clock runs up to an hour ahead)
    assert timedelta(hours=9) <= still_out.late_by <= timedelta(hours=10)
    everywhere = rentals.returns_report(conn, since=world.at(-24), until=world.at(-9))
    assert "M RN 21" in [r.plate for r in everywhere]


def test_cancelled_reservation_frees_the_car_at_once(conn, world):
    v = add_vehicle(conn, world, "B RN 23")
    res = _reserve(conn, world, v, world.at(2), world.at(8))

    gone = rentals.cancel_reservation(
        conn, block_id=res.id, cancelled_by=world.agent.id, reason="customer called"
    )

    assert gone.state == "cancelled"
    assert _found(conn, world, world.at(2), world.at(8)) == ["B RN 23"]
    [event] = _events(conn, v.id, "reservation_cancelled")
    assert event["reason"] == "customer called"
    with pytest.raises(InvalidInput, match="already cancelled"):
        rentals.cancel_reservation(conn, block_id=res.id, cancelled_by=world.agent.id)


def test_rental_under_way_cannot_be_cancelled(conn, world):
    v = add_vehicle(conn, world, "B RN 24")
    rental = rental_under_way(conn, world, v, start=world.at(-1), end=world.at(5))

    with pytest.raises(InvalidInput, match="only reservations can be cancelled") as err:
        rentals.cancel_reservation(conn, block_id=rental.id, cancelled_by=world.agent.id)
    assert err.value.hint == "a started rental ends with a return"
    assert status.get_status(conn, vehicle_id=v.id).status == "rented"


def test_reservation_for_an_unknown_customer_is_refused_by_name(conn, world):
    v = add_vehicle(conn, world, "B RN 25")

    with pytest.raises(NotFound, match="unknown customer") as err:
        rentals.reserve(
            conn,
            vehicle_id=v.id,
            start=world.at(2),
            end=world.at(5),
            pickup_location_id=world.ber.id,
            customer_id=world.bob.id + 1000,
            booked_by=world.agent.id,
        )
    assert err.value.field == "customer"
    assert blocks.vehicle_blocks(conn, vehicle_id=v.id) == []


def test_early_pick_up_moves_the_start_so_an_early_return_can_be_recorded(conn, world):
    v = add_vehicle(conn, world, "B RN 60")
    res = _reserve(conn, world, v, world.at(2), world.at(25))

    rental = rentals.pick_up(conn, block_id=res.id, handed_over_by=world.agent.id, at=world.at(1))
    assert (rental.start, rental.scheduled_end) == (world.at(1), world.at(25))
    back = rentals.return_vehicle(
        conn, block_id=res.id, received_by=world.agent.id, at=world.at(1.5)
    )
    assert back.state == "completed" and back.end == world.at(1.5)


def test_early_pick_up_into_another_booking_is_refused_naming_it(conn, world):
    v = add_vehicle(conn, world, "B RN 61")
    first = _reserve(conn, world, v, world.at(1), world.at(2))
    second = _reserve(conn, world, v, world.at(5), world.at(9))
    with pytest.raises(BookingConflict) as err:
        rentals.pick_up(conn, block_id=second.id, handed_over_by=world.agent.id, at=world.at(1.5))
    assert first.id in [b["id"] for b in err.value.details["blocking"]]
    assert status.get_status(conn, vehicle_id=v.id).status == "available"


def _last_entry(conn, vehicle_id):
    return conn.exec_driver_sql(
        "SELECT change_reason, new_status, metadata FROM vehicle_status_log"
        " WHERE vehicle_id = %s ORDER BY id DESC LIMIT 1",
        (vehicle_id,),
    ).one()


def test_long_return_notes_are_kept_whole_and_the_log_line_shortened(conn, world):
    v = add_vehicle(conn, world, "B RN 18")
    rental = rental_under_way(conn, world, v, start=world.at(-5), end=world.at(5))
    notes = "damage: " + "-".join(["scratch on the rear bumper"] * 40)

    rentals.return_vehicle(
        conn, block_id=rental.id, received_by=world.agent.id, at=world.at(-1), notes=notes
    )

    reason, _, metadata = _last_entry(conn, v.id)
    assert len(reason) == 200 and reason.endswith("…")
    assert metadata["notes"] == notes
    [payload] = _events(conn, v.id, "rental_completed")
    assert payload["notes"] == notes


def test_a_corrected_return_amends_odometer_and_notes_in_the_audit_trail(conn, world):
    v = add_vehicle(conn, world, "B RN 19", odometer_km=10_000)
    rental = rental_under_way(conn, world, v, start=world.at(-5), end=world.at(5))
    rentals.return_vehicle(
        conn,
        block_id=rental.id,
        received_by=world.agent.id,
        at=world.at(-1),
        odometer_km=19_640,  # misread: 10,640
        notes="fuel 50%",
    )

    change = rentals.amend_return(
        conn,
        block_id=rental.id,
        amended_by=world.manager.id,
        odometer_km=10_640,
        notes="fuel 75%; damage: dented door",
    )

    assert fleet.get_vehicle(conn, id=v.id).odometer_km == 10_640
    reason, new_status, metadata = _last_entry(conn, v.id)
    assert reason == (
        f"return of rental #{rental.id} corrected: odometer 10640 km; fuel 75%; damage: dented door"
    )
    assert new_status == "cleaning"  # the car's status is not the correction's business
    assert (metadata["previous_odometer_km"], metadata["odometer_km"]) == (19_640, 10_640)
    assert change.status.status == "cleaning"
    assert blocks.get_block(conn, block_id=rental.id).state == "completed"


def test_only_a_returned_rental_can_have_its_return_corrected(conn, world):
    v = add_vehicle(conn, world, "B RN 20")
    rental = rental_under_way(conn, world, v, start=world.at(-5), end=world.at(5))
    with pytest.raises(InvalidInput, match="not a returned rental"):
        rentals.amend_return(conn, block_id=rental.id, amended_by=world.agent.id, notes="x")
