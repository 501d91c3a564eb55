"""Saved searches: each clerk's named filters, kept apart from everyone else's."""

from __future__ import annotations

import pytest

from db import saved_searches
from db.errors import InvalidInput, NotFound

MORNING = {"location": "BER1", "category": "SUV", "features": ["towbar"], "duration_hours": 24}


def test_saved_search_comes_back_by_name_with_its_criteria(conn, world):
    saved = saved_searches.save(
        conn, user_id=world.agent.id, name="  Morning SUVs ", criteria=MORNING
    )

    assert (saved.name, saved.user_id, saved.criteria) == ("Morning SUVs", world.agent.id, MORNING)
    [listed] = saved_searches.list_saved(conn, user_id=world.agent.id)
    assert listed == saved


def test_saving_under_an_existing_name_replaces_the_criteria(conn, world):
    first = saved_searches.save(conn, user_id=world.agent.id, name="Daily", criteria=MORNING)

    second = saved_searches.save(
        conn, user_id=world.agent.id, name="Daily", criteria={"location": "MUC1"}
    )

    assert (second.id, second.created_at) == (first.id, first.created_at)
    assert [s.criteria for s in saved_searches.list_saved(conn, user_id=world.agent.id)] == [
        {"location": "MUC1"}
    ]


def test_each_clerk_sees_only_their_own_searches_in_name_order(conn, world):
    saved_searches.save(conn, user_id=world.agent.id, name="vans", criteria={"category": "VAN"})
    saved_searches.save(conn, user_id=world.agent.id, name="Airport", criteria={"location": "BER1"})
    saved_searches.save(conn, user_id=world.agent2.id, name="vans", criteria={"plate": "B AB"})

    mine = saved_searches.list_saved(conn, user_id=world.agent.id)
    theirs = saved_searches.list_saved(conn, user_id=world.agent2.id)

    assert [s.name for s in mine] == ["Airport", "vans"]
    assert [(s.name, s.criteria) for s in theirs] == [("vans", {"plate": "B AB"})]
    assert saved_searches.list_saved(conn, user_id=world.manager.id) == []


def test_deleting_removes_only_that_clerks_search(conn, world):
    saved_searches.save(conn, user_id=world.agent.id, name="Daily", criteria=MORNING)
    saved_searches.save(conn, user_id=world.agent2.id, name="Daily", criteria=MORNING)

    saved_searches.delete(conn, user_id=world.agent.id, name=" Daily ")

    assert saved_searches.list_saved(conn, user_id=world.agent.id) == []
    assert [s.name for s in saved_searches.list_saved(conn, user_id=world.agent2.id)] == ["Daily"]


def test_deleting_an_unknown_search_says_so(conn, world):
    with pytest.raises(NotFound, match="no saved search named 'Nightly'") as err:
        saved_searches.delete(conn, user_id=world.agent.id, name="Nightly")
    assert err.value.field == "name"


@pytest.mark.parametrize("name", ["", "   ", "x" * 81])
def test_saved_search_needs_a_name_of_one_to_eighty_characters(conn, world, name):
    with pytest.raises(InvalidInput, match="1-80 characters") as err:
        saved_searches.save(conn, user_id=world.agent.id, name=name, criteria=MORNING)
    assert err.value.field == "name"
    assert saved_searches.list_saved(conn, user_id=world.agent.id) == []


def test_eighty_character_name_is_accepted(conn, world):
    name = "x" * 80
    assert saved_searches.save(conn, user_id=world.agent.id, name=name, criteria={}).name == name


def test_unknown_criteria_are_refused_listing_the_allowed_ones(conn, world):
    with pytest.raises(InvalidInput, match="unknown search criteria: colour, sql") as err:
        saved_searches.save(
            conn,
            user_id=world.agent.id,
            name="Red",
            criteria={"colour": "red", "sql": "1=1", "location": "BER1"},
        )
    assert err.value.field == "criteria"
    assert "duration_hours" in err.value.hint and "customer" in err.value.hint
