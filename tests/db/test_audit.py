"""Audit: 90-day history per vehicle and per user, and rollback as a new linked change."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from db import audit, status
from db.errors import NotFound, RollbackRefused
from tests.conftest import add_vehicle


def _clean(conn, world, v, who=None):
    return status.change_status(
        conn,
        vehicle_id=v.id,
        new_status="cleaning",
        changed_by=(who or world.agent).id,
        reason="valet",
    )


def test_history_per_vehicle_and_per_user_newest_first(conn, world):
    a = add_vehicle(conn, world, "B AU 1")
    b = add_vehicle(conn, world, "B AU 2")
    _clean(conn, world, a)
    _clean(conn, world, b, who=world.agent2)
    status.change_status(
        conn,
        vehicle_id=a.id,
        new_status="available",
        changed_by=world.agent2.id,
        reason="clean now",
    )
    entries = audit.history(conn, vehicle_id=a.id)
    assert [(e.old_status, e.new_status, e.changed_by_name) for e in entries] == [
        ("cleaning", "available", "Ben Booker"),
        ("available", "cleaning", "Anna Agent"),
        (None, "available", "Maria Manager"),
    ]
    by_ben = audit.history(conn, user_id=world.agent2.id)
    assert [(e.plate, e.new_status) for e in by_ben] == [
        ("B AU 1", "available"),
        ("B AU 2", "cleaning"),
    ]
    assert audit.history(conn, location_id=world.muc.id) == []


def test_history_keeps_to_ninety_days_unless_asked(conn, world):
    a = add_vehicle(conn, world, "B AU 3")
    change = _clean(conn, world, a)
    conn.execute(
        text(
            "UPDATE vehicle_status_log SET changed_at = now() - interval '100 days' WHERE id = :id"
        ),
        {"id": change.log_id},
    )
    assert [e.new_status for e in audit.history(conn, vehicle_id=a.id)] == ["available"]
    old = audit.history(conn, vehicle_id=a.id, since=world.at(-24 * 120))
    assert [e.new_status for e in old] == ["available", "cleaning"]


def test_rollback_restores_previous_state_as_a_linked_change(conn, world):
    a = add_vehicle(conn, world, "B AU 4")
    wrong = status.change_status(
        conn,
        vehicle_id=a.id,
        new_status="in_transit",
        changed_by=world.agent.id,
        reason="wrong car",
        destination_location_id=world.muc.id,
        expected_available_at=world.at(6),
    )
    undone = audit.rollback_change(
        conn,
        log_id=wrong.log_id,
        rolled_back_by=world.manager.id,
        reason="clerk picked the wrong plate",
    )
    s = undone.status
    assert (s.status, s.location_code, s.destination_location_id, s.version) == (
        "available",
        "BER1",
        None,
        3,
    )
    entries = audit.history(conn, vehicle_id=a.id)
    assert entries[0].reverts_log_id == wrong.log_id
    assert entries[1].reverted_by_log_id == entries[0].id
    assert len(entries) == 3  # nothing deleted
    with pytest.raises(RollbackRefused, match="already rolled back"):
        audit.rollback_change(
            conn, log_id=wrong.log_id, rolled_back_by=world.manager.id, reason="again"
        )


def test_rollback_refuses_to_silently_undo_later_changes(conn, world):
    a = add_vehicle(conn, world, "B AU 5")
    first = _clean(conn, world, a)
    status.change_status(
        conn,
        vehicle_id=a.id,
        new_status="maintenance",
        changed_by=world.agent2.id,
        reason="dent found",
    )
    with pytest.raises(RollbackRefused) as err:
        audit.rollback_change(
            conn, log_id=first.log_id, rolled_back_by=world.manager.id, reason="oops"
        )
    assert "cleaning→maintenance by Ben Booker" in err.value.message
    assert status.get_status(conn, vehicle_id=a.id).status == "maintenance"


def test_rollback_of_registration_or_unknown_change_is_refused(conn, world):
    a = add_vehicle(conn, world, "B AU 6")
    first = audit.history(conn, vehicle_id=a.id)[0]
    with pytest.raises(RollbackRefused, match="no earlier state"):
        audit.rollback_change(conn, log_id=first.id, rolled_back_by=world.manager.id, reason="x")
    with pytest.raises(NotFound):
        audit.rollback_change(conn, log_id=999_999, rolled_back_by=world.manager.id, reason="x")
    with pytest.raises(NotFound):
        audit.get_entry(conn, log_id=999_999)
    assert audit.get_entry(conn, log_id=first.id).plate == "B AU 6"


def test_availability_changes_include_bookings_not_only_status(conn, world):
    from db import holds

    a = add_vehicle(conn, world, "B AU 7")
    hold = holds.place_hold(
        conn,
        vehicle_id=a.id,
        start=world.at(2),
        end=world.at(5),
        location_id=world.ber.id,
        held_by=world.agent2.id,
    )
    holds.release_hold(conn, hold_id=hold.id, released_by=world.agent2.id)
    kinds = [(e.kind, e.actor_name) for e in audit.availability_changes(conn, vehicle_id=a.id)]
    assert kinds == [
        ("hold_cancelled", "Ben Booker"),
        ("hold_created", "Ben Booker"),
        ("vehicle_registered", "Maria Manager"),
    ]
    mine = audit.availability_changes(conn, user_id=world.agent2.id)
    assert {e.kind for e in mine} == {"hold_created", "hold_cancelled"}
