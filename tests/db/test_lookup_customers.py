"""Lookup for booking forms: any customer by (partial or mistyped) name, the features on offer."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from db import fleet, lookup
from db.errors import InvalidInput
from tests.conftest import add_vehicle


def test_customer_found_by_part_of_the_name_without_any_booking(conn, world):
    found = lookup.find_customers(conn, name="schmi")

    assert [(m.customer_id, m.name) for m in found] == [(world.alice.id, "Alice Schmidt")]
    assert found[0].phone == "+49 30 1234567" and found[0].email == "alice@example.com"


def test_mistyped_surname_still_finds_the_customer(conn, world):
    found = lookup.find_customers(conn, name="Schmitt")

    assert [m.name for m in found] == ["Alice Schmidt"]


def test_closest_name_comes_first_and_limit_holds(conn, world):
    for name in ("Alicia Keys", "Alice Schmid", "Malice Aforethought"):
        fleet.create_customer(conn, name=name)

    found = lookup.find_customers(conn, name="Alice Schmidt", limit=2)

    assert [m.name for m in found] == ["Alice Schmidt", "Alice Schmid"]
    assert found[0].score >= found[1].score


def test_typed_wildcards_are_literal_characters(conn, world):
    assert lookup.find_customers(conn, name="%%") == []
    assert lookup.find_customers(conn, name="__") == []


@pytest.mark.parametrize("name", ["", " ", "A "])
def test_customer_search_needs_two_letters(conn, world, name):
    with pytest.raises(InvalidInput, match="at least two letters") as err:
        lookup.find_customers(conn, name=name)
    assert err.value.field == "name"


def test_known_features_are_those_of_active_vehicles_once_each(conn, world):
    add_vehicle(conn, world, "B KF 1", features=("towbar", "automatic"))
    add_vehicle(conn, world, "B KF 2", features=("Automatic", "child seat"))
    retired = add_vehicle(conn, world, "B KF 3", features=("roof box",))
    # The engine has no retire step yet; a retired car is one marked inactive.
    conn.execute(text("UPDATE vehicles SET active = false WHERE id = :v"), {"v": retired.id})

    assert lookup.known_features(conn) == ["automatic", "child seat", "towbar"]
