"""Availability search: buffers, whereabouts at pickup, late cars, features, alternatives."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from db import availability, blocks, rentals, status, transfers
from db.errors import InvalidInput
from tests.conftest import add_vehicle


def _plates(hits):
    return [h.plate for h in hits]


def test_search_filters_by_category_features_and_location(conn, world):
    add_vehicle(conn, world, "B AV 1", features=("automatic", "gps"))
    add_vehicle(conn, world, "B AV 2", features=("gps",))
    add_vehicle(conn, world, "B AV 3", category=world.suv, features=("automatic",))
    add_vehicle(conn, world, "M AV 4", location=world.muc, features=("automatic",))
    hits = availability.search(
        conn,
        start=world.at(2),
        end=world.at(30),
        location_id=world.ber.id,
        category_id=world.econ.id,
        features=["Automatic"],
    )
    assert _plates(hits) == ["B AV 1"]
    everything = availability.search(
        conn, start=world.at(2), end=world.at(30), location_id=world.ber.id
    )
    assert sorted(_plates(everything)) == ["B AV 1", "B AV 2", "B AV 3"]


def test_longest_idle_car_is_offered_first(conn, world):
    busy = add_vehicle(conn, world, "B AV 5", odometer_km=100)
    add_vehicle(conn, world, "B AV 6", odometer_km=50_000)
    rentals.reserve(
        conn,
        vehicle_id=busy.id,
        start=world.at(1),
        end=world.at(5),
        pickup_location_id=world.ber.id,
        customer_id=world.alice.id,
        booked_by=world.agent.id,
    )
    hits = availability.search(
        conn,
        start=world.at(8),
        end=world.at(20),
        location_id=world.ber.id,
        category_id=world.econ.id,
    )
    assert _plates(hits) == ["B AV 6", "B AV 5"]
    assert hits[1].free_since == world.at(5.5)  # return plus 30 minutes prep


def test_one_way_return_moves_the_car_to_the_other_lot(conn, world):
    v = add_vehicle(conn, world, "B AV 7")
    rentals.reserve(
        conn,
        vehicle_id=v.id,
        start=world.at(2),
        end=world.at(10),
        pickup_location_id=world.ber.id,
        return_location_id=world.muc.id,
        customer_id=world.alice.id,
        booked_by=world.agent.id,
    )
    after = dict(start=world.at(12), end=world.at(20), category_id=world.econ.id)
    assert _plates(availability.search(conn, location_id=world.muc.id, **after)) == ["B AV 7"]
    assert availability.search(conn, location_id=world.ber.id, **after) == []
    hit = availability.search(conn, location_id=world.muc.id, **after)[0]
    assert hit.arrives_from == world.ber.id
    before = dict(start=world.at(0.5), end=world.at(1), category_id=world.econ.id)
    assert _plates(availability.search(conn, location_id=world.ber.id, **before)) == ["B AV 7"]


def test_free_until_names_the_next_booking(conn, world):
    v = add_vehicle(conn, world, "B AV 8")
    rentals.reserve(
        conn,
        vehicle_id=v.id,
        start=world.at(30),
        end=world.at(40),
        pickup_location_id=world.ber.id,
        customer_id=world.alice.id,
        booked_by=world.agent.id,
    )
    hit = availability.search(
        conn,
        start=world.at(2),
        end=world.at(20),
        location_id=world.ber.id,
        category_id=world.econ.id,
    )[0]
    assert hit.free_until == world.at(30)
    assert (
        availability.search(
            conn,
            start=world.at(2),
            end=world.at(29.75),
            location_id=world.ber.id,
            category_id=world.econ.id,
        )
        == []
    )


def test_out_of_service_and_retired_cars_are_never_offered(conn, world):
    v = add_vehicle(conn, world, "B AV 9")
    status.change_status(
        conn,
        vehicle_id=v.id,
        new_status="out_of_service",
        changed_by=world.manager.id,
        reason="accident",
    )
    assert (
        availability.search(conn, start=world.at(2), end=world.at(4), location_id=world.ber.id)
        == []
    )


def test_car_in_transit_is_offered_at_destination_after_eta(conn, world):
    v = add_vehicle(conn, world, "B AV 10")
    t = transfers.schedule_transfer(
        conn,
        vehicle_id=v.id,
        to_location_id=world.muc.id,
        depart_at=world.at(1),
        created_by=world.agent.id,
    )
    transfers.dispatch(conn, block_id=t.id, changed_by=world.agent.id, at=world.at(1))
    later = dict(start=t.end, end=t.end + (t.end - t.start), category_id=world.econ.id)
    assert _plates(availability.search(conn, location_id=world.muc.id, **later)) == ["B AV 10"]
    assert availability.search(conn, location_id=world.ber.id, **later) == []


def test_search_rejects_bad_periods(conn, world):
    with pytest.raises(InvalidInput, match="ends before it starts"):
        availability.search(conn, start=world.at(5), end=world.at(1), location_id=world.ber.id)
    with pytest.raises(InvalidInput, match="no time zone"):
        availability.search(
            conn, start=world.at(1).replace(tzinfo=None), end=world.at(5), location_id=world.ber.id
        )
    with pytest.raises(InvalidInput, match="limit"):
        availability.search(
            conn, start=world.at(1), end=world.at(5), location_id=world.ber.id, limit=0
        )


def test_alternatives_offer_upgrade_other_lot_and_next_window(conn, world):
    econ = add_vehicle(conn, world, "B AL 1")
    add_vehicle(conn, world, "B AL 2", category=world.suv)
    add_vehicle(conn, world, "M AL 3", location=world.muc)
    rentals.reserve(
        conn,
        vehicle_id=econ.id,
        start=world.at(10),
        end=world.at(20),
        pickup_location_id=world.ber.id,
        customer_id=world.bob.id,
        booked_by=world.agent.id,
    )
    wanted = dict(
        start=world.at(12), end=world.at(18), location_id=world.ber.id, category_id=world.econ.id
    )
    assert availability.search(conn, **wanted) == []
    alt = availability.alternatives(conn, **wanted)
    assert _plates(alt.upgrades) == ["B AL 2"]
    assert [(o.location_code, o.vehicle.plate) for o in alt.other_locations] == [("MUC1", "M AL 3")]
    travel = alt.other_locations[0].transfer_time
    assert 5 <= travel.total_seconds() / 3600 <= 12  # Munich to Berlin by road
    assert alt.other_locations[0].depart_by == world.at(12) - travel
    assert [(w.plate, w.start) for w in alt.nearest_windows] == [("B AL 1", world.at(20.5))]


def test_materialized_day_counts_free_minutes(conn, world):
    v = add_vehicle(conn, world, "B MAT 1")
    day = (world.now + timedelta(days=2)).date()
    begin, _ = availability.local_day_bounds(day, "Europe/Berlin")
    blocks.insert_block(
        conn,
        vehicle_id=v.id,
        kind="maintenance",
        start=begin,
        end=begin + timedelta(hours=6),
        start_location_id=world.ber.id,
        end_location_id=world.ber.id,
        created_by=world.agent.id,
    )
    assert availability.materialize(conn, first_day=day, days=2, vehicle_ids=[v.id]) == 2
    rows = conn.execute(
        text(
            "SELECT day, free_minutes, is_available, blocking_reason FROM availability_cache"
            " WHERE vehicle_id = :v ORDER BY day"
        ),
        {"v": v.id},
    ).all()
    assert [(r.free_minutes, r.is_available, r.blocking_reason) for r in rows] == [
        (18 * 60, False, "maintenance"),
        (24 * 60, True, None),
    ]


def test_car_promised_elsewhere_by_its_status_cannot_be_booked_before_then(conn, world):
    from db import holds
    from db.errors import NotAvailable

    v = add_vehicle(conn, world, "B AV 11")
    status.change_status(
        conn,
        vehicle_id=v.id,
        new_status="maintenance",
        changed_by=world.agent.id,
        reason="brakes",
        expected_available_at=world.at(10),
    )
    assert (
        availability.search(conn, start=world.at(5), end=world.at(8), location_id=world.ber.id)
        == []
    )
    with pytest.raises(NotAvailable, match="maintenance until"):
        holds.place_hold(
            conn,
            vehicle_id=v.id,
            start=world.at(5),
            end=world.at(8),
            location_id=world.ber.id,
            held_by=world.agent.id,
        )
    assert (
        holds.place_hold(
            conn,
            vehicle_id=v.id,
            start=world.at(11),
            end=world.at(13),
            location_id=world.ber.id,
            held_by=world.agent.id,
        ).kind
        == "hold"
    )


def _at(conn, world, loc, start, end):
    return _plates(
        availability.search(
            conn,
            start=world.at(start),
            end=world.at(end),
            location_id=loc.id,
            category_id=world.econ.id,
        )
    )


def test_cancelled_move_no_longer_takes_the_car_away(conn, world):
    v = add_vehicle(conn, world, "B MV 1")
    trip = rentals.reserve(
        conn,
        vehicle_id=v.id,
        start=world.at(2),
        end=world.at(10),
        pickup_location_id=world.ber.id,
        return_location_id=world.muc.id,
        customer_id=world.alice.id,
        booked_by=world.agent.id,
    )
    assert _at(conn, world, world.ber, 20, 30) == []
    assert _at(conn, world, world.muc, 20, 30) == ["B MV 1"]
    rentals.cancel_reservation(conn, block_id=trip.id, cancelled_by=world.agent.id)
    assert _at(conn, world, world.ber, 20, 30) == ["B MV 1"]
    assert _at(conn, world, world.muc, 20, 30) == []


def test_car_that_moves_on_is_found_where_its_last_move_ends(conn, world):
    v = add_vehicle(conn, world, "B MV 2")
    rentals.reserve(
        conn,
        vehicle_id=v.id,
        start=world.at(2),
        end=world.at(10),
        pickup_location_id=world.ber.id,
        return_location_id=world.muc.id,
        customer_id=world.alice.id,
        booked_by=world.agent.id,
    )
    back = transfers.schedule_transfer(
        conn,
        vehicle_id=v.id,
        to_location_id=world.ber.id,
        depart_at=world.at(12),
        created_by=world.agent.id,
    )
    after_back = back.end.timestamp() - world.now.timestamp()
    t = after_back / 3600 + 1
    assert _at(conn, world, world.ber, t, t + 5) == ["B MV 2"]
    assert _at(conn, world, world.muc, t, t + 5) == []
    assert _at(conn, world, world.muc, 10.5, 11.5) == ["B MV 2"]  # between the two moves
    assert _at(conn, world, world.ber, 10.5, 11.5) == []
    blocks.end_block(
        conn, block_id=back.id, state="cancelled", changed_by=world.agent.id, reason="not needed"
    )
    assert _at(conn, world, world.muc, t, t + 5) == ["B MV 2"]
    assert _at(conn, world, world.ber, t, t + 5) == []
