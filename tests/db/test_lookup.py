"""Lookup: a car by partial or misread plate, a customer's rentals by (mistyped) name."""

from __future__ import annotations

import pytest

from db import fleet, lookup, rentals, status
from db.errors import InvalidInput
from tests.conftest import add_vehicle
from tests.db.factories import booking, rental_under_way


@pytest.fixture
def plates(conn, world):
    """A small fleet whose plates are full of look-alike characters."""
    add_vehicle(conn, world, "B AO 1001")
    add_vehicle(conn, world, "M IL 4711", location=world.muc, category=world.suv)
    add_vehicle(conn, world, "HH BS 8255")
    add_vehicle(conn, world, "K ZZ 2020")
    add_vehicle(conn, world, "B AB 123")
    add_vehicle(conn, world, "B AB 1234")


def _plates(matches):
    return [m.plate for m in matches]


def test_partial_plate_finds_every_car_containing_it(conn, world, plates):
    found = lookup.find_by_plate(conn, query="ab12")

    assert _plates(found) == ["B AB 123", "B AB 1234"]
    assert all(m.score == 0.9 and not m.exact for m in found)


def test_exact_plate_ranks_before_plates_that_merely_contain_it(conn, world, plates):
    found = lookup.find_by_plate(conn, query="b-ab 123")

    assert _plates(found)[:2] == ["B AB 123", "B AB 1234"]
    assert found[0].exact and found[0].score == 1.0
    assert not found[1].exact and found[1].score < 1.0


@pytest.mark.parametrize(
    ("typed", "plate"),
    [
        ("BA0 1001", "B AO 1001"),  # O read as 0
        ("AQ 1OO1", "B AO 1001"),  # Q and O
        ("AD100I", "B AO 1001"),  # D for O, I for 1
        ("LI 47L1", "M IL 4711"),  # 1/I/L all alike
        ("B5 B255", "HH BS 8255"),  # 8/B and 5/S
        ("8S 82SS", "HH BS 8255"),
        ("2Z Z0Z0", "K ZZ 2020"),  # 2/Z
        ("KZ2 2O2O", "K ZZ 2020"),
    ],
)
def test_misread_characters_still_find_the_right_car(conn, world, plates, typed, plate):
    found = lookup.find_by_plate(conn, query=typed)

    assert found and found[0].plate == plate


def test_near_miss_is_found_by_similarity_but_ranked_below_real_matches(conn, world, plates):
    found = lookup.find_by_plate(conn, query="BAB1243")  # last two digits swapped

    assert "B AB 1234" in _plates(found)
    assert all(m.score < 0.9 and not m.exact for m in found)


def test_plate_match_tells_where_the_car_is_and_what_it_is_doing(conn, world, plates):
    car = lookup.find_by_plate(conn, query="MIL4711")[0]
    assert (car.make, car.model, car.category_code) == ("VW", "Golf", "SUV")
    assert (car.status, car.location_code) == ("available", "MUC1")

    status.change_status(
        conn,
        vehicle_id=car.vehicle_id,
        new_status="maintenance",
        changed_by=world.agent.id,
        reason="tyres",
        expected_available_at=world.at(3),
    )

    assert lookup.find_by_plate(conn, query="MIL4711")[0].status == "maintenance"


def test_unknown_plate_finds_nothing(conn, world, plates):
    assert lookup.find_by_plate(conn, query="XY 9876") == []


def test_plate_search_limit_caps_the_answer(conn, world, plates):
    assert _plates(lookup.find_by_plate(conn, query="B AB", limit=1)) == ["B AB 123"]


@pytest.mark.parametrize(
    "typed", ["", "AB%12", "AB_12", "B'; DROP TABLE vehicles", "AB.12", "A" * 17, "Ä 12"]
)
def test_malformed_plate_query_is_refused(conn, typed):
    with pytest.raises(InvalidInput, match="malformed plate search") as err:
        lookup.find_by_plate(conn, query=typed)
    assert err.value.field == "plate"


@pytest.mark.parametrize("typed", ["A", "-", " 7 ", "- -"])
def test_plate_query_shorter_than_two_characters_is_refused(conn, typed):
    with pytest.raises(InvalidInput, match="at least two characters"):
        lookup.find_by_plate(conn, query=typed)


def test_plate_key_folds_like_the_database(conn):
    typed = "b-oq dil 8sz"
    stored = conn.exec_driver_sql("SELECT fleet_plate_key(%s)", (typed,)).scalar_one()
    assert lookup.plate_key(typed) == stored == "800011852"


@pytest.fixture
def customer_bookings(conn, world):
    """Alice has a car out and a cancelled booking; Bob has one returned and one upcoming."""
    out = add_vehicle(conn, world, "B CU 1")
    rental = rental_under_way(conn, world, out, start=world.at(-5), end=world.at(20))
    spare = add_vehicle(conn, world, "B CU 2")
    dropped = booking(
        conn, world, spare, start=world.at(30), end=world.at(40), customer=world.alice
    )
    rentals.cancel_reservation(conn, block_id=dropped.id, cancelled_by=world.agent.id)
    past = add_vehicle(conn, world, "B CU 3")
    done = rental_under_way(
        conn, world, past, start=world.at(-50), end=world.at(-30), customer=world.bob
    )
    rentals.return_vehicle(conn, block_id=done.id, received_by=world.agent.id, at=world.at(-30))
    upcoming = booking(
        conn, world, spare, start=world.at(50), end=world.at(60), return_location=world.muc
    )
    return {"rental": rental, "upcoming": upcoming}


def test_customer_name_finds_the_car_out_with_contact_details(conn, world, customer_bookings):
    [match] = lookup.find_rentals_by_customer(conn, name="Schmidt")

    assert (match.block_id, match.kind, match.plate) == (
        customer_bookings["rental"].id,
        "rental",
        "B CU 1",
    )
    assert (match.customer_name, match.customer_phone, match.customer_email) == (
        "Alice Schmidt",
        "+49 30 1234567",
        "alice@example.com",
    )
    assert (match.start, match.end) == (world.at(-5), world.at(20))
    assert (match.pickup_code, match.return_code) == ("BER1", "BER1")


def test_customer_search_lists_upcoming_reservations_unless_asked_not_to(
    conn, world, customer_bookings
):
    [upcoming] = lookup.find_rentals_by_customer(conn, name="meyer")
    assert (upcoming.block_id, upcoming.kind) == (customer_bookings["upcoming"].id, "reservation")
    assert upcoming.return_code == "MUC1"

    assert lookup.find_rentals_by_customer(conn, name="meyer", include_upcoming=False) == []


@pytest.mark.parametrize("typed", ["alice schmitt", "Alise Schmit", "Shmidt", "Schmitt"])
def test_customer_name_with_a_typo_still_finds_the_rental(conn, world, customer_bookings, typed):
    found = lookup.find_rentals_by_customer(conn, name=typed)

    assert [m.plate for m in found] == ["B CU 1"]


def test_exact_part_of_a_name_ranks_above_a_fuzzy_match(conn, world, customer_bookings):
    carla = fleet.create_customer(conn, name="Carla Schmitz")
    car = add_vehicle(conn, world, "B CU 4")
    rental_under_way(conn, world, car, start=world.at(-2), end=world.at(10), customer=carla)

    found = lookup.find_rentals_by_customer(conn, name="Schmitz")

    assert [m.customer_name for m in found] == ["Carla Schmitz", "Alice Schmidt"]
    assert found[0].score > found[1].score


def test_unrelated_name_finds_nothing(conn, world, customer_bookings):
    assert lookup.find_rentals_by_customer(conn, name="Zimmermann") == []


@pytest.mark.parametrize("typed", ["", " ", "a", " b "])
def test_customer_search_needs_two_letters(conn, typed):
    with pytest.raises(InvalidInput, match="at least two letters") as err:
        lookup.find_rentals_by_customer(conn, name=typed)
    assert err.value.field == "name"


def test_wildcards_in_a_name_are_taken_literally_not_as_match_all(conn, world, customer_bookings):
    assert lookup.find_rentals_by_customer(conn, name="%%") == []
    assert lookup.find_rentals_by_customer(conn, name="__") == []
