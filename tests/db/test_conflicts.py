"""Conflicts: bookings their car cannot honour, why, and the concrete ways out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from db import blocks, conflicts, holds, maintenance, rentals, status, transfers
from db.errors import BookingConflict, HoldExpired, InvalidInput, NotAvailable
from tests.conftest import add_vehicle
from tests.db.factories import booking, rental_under_way


def _late_car_with_next_booking(conn, world, *, starts_in: float, plate: str = "B CF 1"):
    """An economy car 2 h overdue whose next customer, Bob, picks up in `starts_in` hours.

    Bob booked while the car was still expected back, so the booking is already there.
    """
    late = add_vehicle(conn, world, plate)
    rental = rental_under_way(conn, world, late, start=world.at(-26), end=world.at(-2))
    nxt = booking(conn, world, late, start=world.at(starts_in), end=world.at(starts_in + 8))
    return late, rental, nxt


def _by_action(conflict):
    out: dict[str, list] = {}
    for s in conflict.suggestions:
        out.setdefault(s.action, []).append(s)
    return out


def test_overdue_car_flags_the_next_booking_and_offers_swap_upgrade_and_transfer(conn, world):
    late, rental, nxt = _late_car_with_next_booking(conn, world, starts_in=12)
    add_vehicle(conn, world, "B CF 2")
    add_vehicle(conn, world, "B CF 3", category=world.suv)
    add_vehicle(conn, world, "M CF 4", location=world.muc)

    [c] = conflicts.list_conflicts(conn, now=world.now)

    assert (c.kind, c.block_id, c.block_kind, c.plate) == (
        "overdue_return",
        nxt.id,
        "reservation",
        "B CF 1",
    )
    assert c.severity == "warning"  # pickup is 12 h away
    assert c.cause_block_id == rental.id
    assert c.cause.startswith("the car is not back from its rental, which was due")
    assert world.at(-2).isoformat(timespec="minutes") in c.cause
    assert (c.customer_name, c.customer_phone) == ("Bob Meyer", "+49 89 7654321")
    assert (c.location_code, c.time_zone) == ("BER1", "Europe/Berlin")
    assert (c.starts, c.ends) == (world.at(12), world.at(20))

    ways = _by_action(c)
    assert [s.plate for s in ways["swap"]] == ["B CF 2"]
    assert "B CF 2" in ways["swap"][0].description
    assert [(s.plate, s.category_code) for s in ways["upgrade"]] == [("B CF 3", "SUV")]
    [move] = ways["transfer"]
    drive = transfers.transfer_duration(world.muc, world.ber)
    assert (move.plate, move.from_location_code) == ("M CF 4", "MUC1")
    assert move.depart_by == world.at(12) - drive
    assert "M CF 4" in move.description and "MUC1" in move.description
    # the late car itself is never offered as a way out
    assert late.id not in {s.vehicle_id for s in c.suggestions}


def test_pickup_within_two_hours_is_critical_and_transfers_too_slow_are_not_offered(conn, world):
    _late_car_with_next_booking(conn, world, starts_in=1)
    add_vehicle(conn, world, "M CF 5", location=world.muc)

    [c] = conflicts.list_conflicts(conn, now=world.now)

    assert c.kind == "overdue_return" and c.severity == "critical"
    assert c.suggestions == []  # nothing free at BER, and MUC is 10 h away


def test_without_suggestions_the_list_is_just_the_conflicts(conn, world):
    _late_car_with_next_booking(conn, world, starts_in=12)
    add_vehicle(conn, world, "B CF 6")

    [c] = conflicts.list_conflicts(conn, now=world.now, with_suggestions=False)

    assert c.kind == "overdue_return" and c.suggestions == []


def test_car_that_is_on_time_and_on_the_right_lot_has_no_conflict(conn, world):
    v = add_vehicle(conn, world, "B CF 7")
    rental_under_way(conn, world, v, start=world.at(-5), end=world.at(3))
    booking(conn, world, v, start=world.at(6), end=world.at(10))

    assert conflicts.list_conflicts(conn, now=world.now) == []


def test_one_way_booking_made_later_strands_the_next_pickup_at_the_wrong_lot(conn, world):
    v = add_vehicle(conn, world, "B CF 8")
    stranded = booking(conn, world, v, start=world.at(10), end=world.at(14))
    # a clerk later books the same car one way to Munich before Bob's pickup in Berlin
    one_way = booking(
        conn,
        world,
        v,
        start=world.at(2),
        end=world.at(6),
        customer=world.alice,
        return_location=world.muc,
    )

    [c] = conflicts.list_conflicts(conn, now=world.now)

    assert (c.kind, c.block_id) == ("wrong_location", stranded.id)
    assert c.cause == "the car will be at MUC1, not at the pickup lot"
    assert c.cause_block_id == one_way.id


def test_car_moved_to_another_lot_by_hand_conflicts_with_its_booking_there(conn, world):
    v = add_vehicle(conn, world, "B CF 9")
    res = booking(conn, world, v, start=world.at(5), end=world.at(9))
    status.change_status(
        conn,
        vehicle_id=v.id,
        new_status="available",
        changed_by=world.agent.id,
        reason="driven to Munich for an event",
        location_id=world.muc.id,
        allow_same=True,
    )

    [c] = conflicts.list_conflicts(conn, now=world.now)

    assert (c.kind, c.block_id, c.cause_block_id) == ("wrong_location", res.id, None)
    assert "MUC1" in c.cause


def test_maintenance_running_over_flags_the_booking_after_it(conn, world):
    v = add_vehicle(conn, world, "B CF 10")
    work = maintenance.schedule_maintenance(
        conn, vehicle_id=v.id, start=world.at(-10), end=world.at(-1), created_by=world.agent.id
    )
    res = booking(conn, world, v, start=world.at(3), end=world.at(9))
    maintenance.start_maintenance(
        conn, block_id=work.id, changed_by=world.agent.id, at=world.at(-10)
    )

    [c] = conflicts.list_conflicts(conn, now=world.now)

    assert (c.kind, c.block_id, c.cause_block_id) == ("maintenance_overrun", res.id, work.id)
    assert c.cause.startswith("maintenance was due to finish")


def test_out_of_service_car_flags_its_bookings(conn, world):
    v = add_vehicle(conn, world, "B CF 11")
    res = booking(conn, world, v, start=world.at(3), end=world.at(9))
    status.change_status(
        conn,
        vehicle_id=v.id,
        new_status="out_of_service",
        changed_by=world.manager.id,
        reason="engine light",
    )

    [c] = conflicts.list_conflicts(conn, now=world.now)

    assert (c.kind, c.block_id, c.cause) == ("out_of_service", res.id, "the car is out of service")
    assert c.cause_block_id is None


def test_car_in_the_workshop_until_after_pickup_is_not_back_in_time(conn, world):
    v = add_vehicle(conn, world, "B CF 12")
    res = booking(conn, world, v, start=world.at(3), end=world.at(9))
    status.change_status(
        conn,
        vehicle_id=v.id,
        new_status="maintenance",
        changed_by=world.agent.id,
        reason="windscreen chip",
        expected_available_at=world.at(5),
    )

    [c] = conflicts.list_conflicts(conn, now=world.now)

    assert (c.kind, c.block_id) == ("not_back_in_time", res.id)
    assert world.at(5).isoformat(timespec="minutes") in c.cause


def test_location_filter_shows_only_pickups_at_that_lot(conn, world):
    _late_car_with_next_booking(conn, world, starts_in=5)
    muc = add_vehicle(conn, world, "M CF 13", location=world.muc)
    res = booking(conn, world, muc, start=world.at(4), end=world.at(8), location=world.muc)
    status.change_status(
        conn, vehicle_id=muc.id, new_status="out_of_service", changed_by=world.agent.id, reason="x"
    )

    at_muc = conflicts.list_conflicts(conn, now=world.now, location_id=world.muc.id)
    everywhere = conflicts.list_conflicts(conn, now=world.now, with_suggestions=False)

    assert [(c.block_id, c.location_code) for c in at_muc] == [(res.id, "MUC1")]
    assert [c.plate for c in everywhere] == ["M CF 13", "B CF 1"]  # soonest pickup first


def test_horizon_limits_how_far_ahead_conflicts_are_looked_for(conn, world):
    _late_car_with_next_booking(conn, world, starts_in=30)

    assert conflicts.list_conflicts(conn, now=world.now, horizon=timedelta(hours=24)) == []
    assert len(conflicts.list_conflicts(conn, now=world.now, horizon=timedelta(hours=31))) == 1


@pytest.mark.parametrize("horizon", [timedelta(0), timedelta(hours=-1), timedelta(days=32)])
def test_horizon_outside_one_minute_to_31_days_is_refused(conn, horizon):
    with pytest.raises(InvalidInput, match="horizon") as err:
        conflicts.list_conflicts(conn, horizon=horizon)
    assert err.value.field == "horizon"


def test_swap_moves_the_booking_to_the_named_free_car(conn, world):
    late, _, nxt = _late_car_with_next_booking(conn, world, starts_in=12)
    spare = add_vehicle(conn, world, "B CF 14")
    [c] = conflicts.list_conflicts(conn, now=world.now)
    [swap] = [s for s in c.suggestions if s.action == "swap"]

    moved = conflicts.swap_vehicle(
        conn, block_id=c.block_id, vehicle_id=swap.vehicle_id, changed_by=world.agent.id
    )

    assert moved.vehicle_id == spare.id and moved.plate == "B CF 14"
    assert moved.kind == "reservation" and moved.state == "active"
    assert (moved.customer_id, moved.start, moved.end) == (world.bob.id, nxt.start, nxt.end)
    assert moved.start_location_id == world.ber.id
    assert blocks.get_block(conn, block_id=nxt.id).state == "cancelled"
    assert conflicts.list_conflicts(conn, now=world.now) == []
    assert blocks.vehicle_blocks(conn, vehicle_id=late.id, since=world.now) == []


def test_swap_to_a_car_that_is_taken_is_refused_and_the_booking_stays(conn, world):
    _, _, nxt = _late_car_with_next_booking(conn, world, starts_in=12)
    taken = add_vehicle(conn, world, "B CF 15")
    other = booking(conn, world, taken, start=world.at(14), end=world.at(16), customer=world.alice)

    with pytest.raises(BookingConflict) as err:
        conflicts.swap_vehicle(
            conn, block_id=nxt.id, vehicle_id=taken.id, changed_by=world.agent.id
        )

    assert [b["id"] for b in err.value.details["blocking"]] == [other.id]
    kept = blocks.get_block(conn, block_id=nxt.id)
    assert (kept.state, kept.vehicle_id, kept.customer_id) == (
        "active",
        nxt.vehicle_id,
        world.bob.id,
    )
    assert len(conflicts.list_conflicts(conn, now=world.now, with_suggestions=False)) == 1


def test_swap_refuses_a_car_on_another_lot_and_the_same_car(conn, world):
    late, _, nxt = _late_car_with_next_booking(conn, world, starts_in=12)
    elsewhere = add_vehicle(conn, world, "M CF 16", location=world.muc)

    with pytest.raises(NotAvailable, match="MUC1"):
        conflicts.swap_vehicle(
            conn, block_id=nxt.id, vehicle_id=elsewhere.id, changed_by=world.agent.id
        )
    with pytest.raises(InvalidInput, match="already has"):
        conflicts.swap_vehicle(conn, block_id=nxt.id, vehicle_id=late.id, changed_by=world.agent.id)
    assert blocks.get_block(conn, block_id=nxt.id).state == "active"


def test_only_open_bookings_can_be_swapped(conn, world):
    v = add_vehicle(conn, world, "B CF 17")
    spare = add_vehicle(conn, world, "B CF 18")
    rental = rental_under_way(conn, world, v, start=world.at(-2), end=world.at(5))

    with pytest.raises(InvalidInput, match="only open bookings"):
        conflicts.swap_vehicle(
            conn, block_id=rental.id, vehicle_id=spare.id, changed_by=world.agent.id
        )


def test_live_hold_moves_with_its_expiry_to_the_other_car(conn, world):
    v = add_vehicle(conn, world, "B CF 19")
    spare = add_vehicle(conn, world, "B CF 20")
    hold = holds.place_hold(
        conn,
        vehicle_id=v.id,
        start=world.at(3),
        end=world.at(6),
        location_id=world.ber.id,
        held_by=world.agent.id,
    )

    moved = conflicts.swap_vehicle(
        conn, block_id=hold.id, vehicle_id=spare.id, changed_by=world.agent.id
    )

    assert (moved.kind, moved.vehicle_id, moved.expires_at) == ("hold", spare.id, hold.expires_at)
    assert blocks.get_block(conn, block_id=hold.id).state == "cancelled"


def test_hold_that_ran_out_cannot_be_swapped(conn, world):
    v = add_vehicle(conn, world, "B CF 21")
    spare = add_vehicle(conn, world, "B CF 22")
    hold = holds.place_hold(
        conn,
        vehicle_id=v.id,
        start=world.at(3),
        end=world.at(6),
        location_id=world.ber.id,
        held_by=world.agent.id,
    )
    conn.execute(
        text(
            "UPDATE blocks SET expires_at = clock_timestamp() - interval '1 minute' WHERE id = :h"
        ),
        {"h": hold.id},
    )

    with pytest.raises(HoldExpired, match="ran out"):
        conflicts.swap_vehicle(
            conn, block_id=hold.id, vehicle_id=spare.id, changed_by=world.agent.id
        )
    assert blocks.vehicle_blocks(conn, vehicle_id=spare.id) == []


def test_suggestions_are_worked_out_for_the_soonest_conflicts_only(conn, world):
    _late_car_with_next_booking(conn, world, starts_in=12, plate="B CF 20")
    _late_car_with_next_booking(conn, world, starts_in=20, plate="B CF 21")
    add_vehicle(conn, world, "B CF 22")
    found = conflicts.list_conflicts(conn, now=world.now, suggest_for=1)
    assert [c.plate for c in found] == ["B CF 20", "B CF 21"]
    assert found[0].suggestions and found[1].suggestions == []


def _kinds_since(conn, before: int) -> list[str]:
    return list(
        conn.execute(
            text("SELECT kind FROM availability_events WHERE id > :b ORDER BY id"), {"b": before}
        ).scalars()
    )


def test_refresh_announces_a_conflict_once_then_its_escalation_and_its_clearing(conn, world):
    late, rental, nxt = _late_car_with_next_booking(conn, world, starts_in=6)
    before = conn.execute(text("SELECT coalesce(max(id), 0) FROM availability_events")).scalar()

    first = conflicts.refresh_conflicts(conn, now=world.now)
    again = conflicts.refresh_conflicts(conn, now=world.now)
    assert (first.detected, again.detected, again.open) == (1, 0, 1)
    # Four hours on, Bob's pickup is within two hours: the same conflict is now critical.
    later = conflicts.refresh_conflicts(conn, now=world.at(4.5))
    assert later.escalated == 1 and later.detected == 0
    # The car comes back: the conflict clears, and is announced as cleared.
    rentals.return_vehicle(conn, block_id=rental.id, received_by=world.agent.id, at=world.now)
    cleared = conflicts.refresh_conflicts(conn, now=world.at(4.5))
    assert cleared.cleared == 1 and cleared.open == 0
    kinds = [k for k in _kinds_since(conn, before) if k.startswith("conflict_")]
    assert kinds == ["conflict_detected", "conflict_escalated", "conflict_cleared"]
    detected = conn.execute(
        text("SELECT payload FROM availability_events WHERE kind = 'conflict_detected'")
    ).scalar()
    assert detected["plate"] == late.plate and detected["block_id"] == nxt.id
