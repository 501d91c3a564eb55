"""Status changes: state machine, versions, log and events written with the change."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from db import status
from db.errors import InvalidInput, InvalidTransition, StaleVersion
from tests.conftest import add_vehicle


def _log(conn, vehicle_id):
    return (
        conn.execute(
            text("SELECT * FROM vehicle_status_log WHERE vehicle_id = :v ORDER BY version"),
            {"v": vehicle_id},
        )
        .mappings()
        .all()
    )


def test_new_vehicle_starts_available_with_a_logged_registration(conn, world):
    v = add_vehicle(conn, world, "B ST 1")
    s = status.get_status(conn, vehicle_id=v.id)
    assert (s.status, s.location_code, s.version) == ("available", "BER1", 1)
    assert s.whereabouts == "on lot BER1"
    log = _log(conn, v.id)
    assert [(r["old_status"], r["new_status"]) for r in log] == [(None, "available")]


def test_change_updates_row_log_and_event_together(conn, world):
    v = add_vehicle(conn, world, "B ST 2")
    change = status.change_status(
        conn,
        vehicle_id=v.id,
        new_status="cleaning",
        changed_by=world.agent.id,
        reason="spilled coffee",
        expected_version=1,
        metadata={"bay": 4},
    )
    assert change.status.status == "cleaning" and change.status.version == 2
    log = _log(conn, v.id)[-1]
    assert (log["old_status"], log["new_status"], log["change_reason"]) == (
        "available",
        "cleaning",
        "spilled coffee",
    )
    assert log["changed_by"] == world.agent.id and log["metadata"] == {"bay": 4}
    assert log["old_state"]["status"] == "available"
    event = conn.execute(
        text("SELECT kind, payload FROM availability_events WHERE id = :id"),
        {"id": change.event_id},
    ).one()
    assert event.kind == "status_changed"
    assert event.payload["status"] == "cleaning" and event.payload["log_id"] == change.log_id


def test_same_status_is_refused_naming_allowed_ones(conn, world):
    v = add_vehicle(conn, world, "B ST 3")
    with pytest.raises(InvalidTransition) as err:
        status.change_status(
            conn, vehicle_id=v.id, new_status="available", changed_by=world.agent.id, reason="again"
        )
    assert "already available" in err.value.message
    assert "maintenance" in err.value.hint and "rented" in err.value.hint


def test_rented_to_rented_is_refused(conn, world):
    v = add_vehicle(conn, world, "B ST 4")
    status.change_status(
        conn,
        vehicle_id=v.id,
        new_status="rented",
        changed_by=world.agent.id,
        reason="walk-in",
        customer_id=world.alice.id,
        expected_available_at=world.at(24),
    )
    with pytest.raises(InvalidTransition, match="already rented"):
        status.change_status(
            conn,
            vehicle_id=v.id,
            new_status="rented",
            changed_by=world.agent.id,
            reason="twice",
            customer_id=world.bob.id,
            expected_available_at=world.at(24),
        )


def test_impossible_transition_names_the_allowed_ones(conn, world):
    v = add_vehicle(conn, world, "B ST 5")
    status.change_status(
        conn, vehicle_id=v.id, new_status="cleaning", changed_by=world.agent.id, reason="dirty"
    )
    with pytest.raises(InvalidTransition) as err:
        status.change_status(
            conn,
            vehicle_id=v.id,
            new_status="in_transit",
            changed_by=world.agent.id,
            reason="go",
            destination_location_id=world.muc.id,
            expected_available_at=world.at(5),
        )
    assert err.value.details["allowed"] == ["available", "maintenance", "out_of_service"]


def test_in_transit_without_destination_is_refused(conn, world):
    v = add_vehicle(conn, world, "B ST 6")
    with pytest.raises(InvalidTransition, match="without a destination"):
        status.change_status(
            conn, vehicle_id=v.id, new_status="in_transit", changed_by=world.agent.id, reason="go"
        )


def test_stale_version_loses_with_current_state(conn, world):
    v = add_vehicle(conn, world, "B ST 7")
    status.change_status(
        conn,
        vehicle_id=v.id,
        new_status="cleaning",
        changed_by=world.agent.id,
        reason="first terminal",
        expected_version=1,
    )
    with pytest.raises(StaleVersion) as err:
        status.change_status(
            conn,
            vehicle_id=v.id,
            new_status="maintenance",
            changed_by=world.agent2.id,
            reason="second terminal",
            expected_version=1,
        )
    assert err.value.details["current"]["status"] == "cleaning"
    assert err.value.details["current"]["version"] == 2
    assert status.get_status(conn, vehicle_id=v.id).status == "cleaning"


def test_arrival_from_transit_lands_at_destination(conn, world):
    v = add_vehicle(conn, world, "B ST 8")
    status.change_status(
        conn,
        vehicle_id=v.id,
        new_status="in_transit",
        changed_by=world.agent.id,
        reason="to Munich",
        destination_location_id=world.muc.id,
        expected_available_at=world.at(6),
    )
    s = status.get_status(conn, vehicle_id=v.id)
    assert s.whereabouts == "in transit to MUC1"
    arrived = status.change_status(
        conn, vehicle_id=v.id, new_status="available", changed_by=world.agent.id, reason="arrived"
    ).status
    assert arrived.location_code == "MUC1" and arrived.destination_location_id is None


def test_rented_vehicle_past_return_reads_as_overdue(conn, world):
    v = add_vehicle(conn, world, "B ST 9")
    status.change_status(
        conn,
        vehicle_id=v.id,
        new_status="rented",
        changed_by=world.agent.id,
        reason="walk-in",
        customer_id=world.alice.id,
        expected_available_at=world.at(2),
    )
    assert not status.get_status(conn, vehicle_id=v.id, now=world.at(1)).overdue
    late = status.get_status(conn, vehicle_id=v.id, now=world.at(3))
    assert late.overdue and late.whereabouts == "with customer"
    assert late.customer_name == "Alice Schmidt" and late.customer_phone == "+49 30 1234567"


def test_board_lists_overdue_first_and_counts_by_location(conn, world):
    a = add_vehicle(conn, world, "B ST 10")
    add_vehicle(conn, world, "A ST 11", location=world.muc)
    status.change_status(
        conn,
        vehicle_id=a.id,
        new_status="rented",
        changed_by=world.agent.id,
        reason="x",
        customer_id=world.bob.id,
        expected_available_at=world.at(-30),
    )
    board = status.list_status(conn)
    assert board[0].plate == "B ST 10" and board[0].overdue
    counts = {(c["location"], c["status"]): c["vehicles"] for c in status.status_counts(conn)}
    assert counts == {("BER1", "overdue"): 1, ("MUC1", "available"): 1}
    assert [s.plate for s in status.list_status(conn, status="overdue")] == ["B ST 10"]
    assert [s.plate for s in status.list_status(conn, location_id=world.muc.id)] == ["A ST 11"]


def test_reason_is_required_and_status_must_exist(conn, world):
    v = add_vehicle(conn, world, "B ST 12")
    with pytest.raises(InvalidInput, match="reason"):
        status.change_status(
            conn, vehicle_id=v.id, new_status="cleaning", changed_by=world.agent.id, reason="  "
        )
    with pytest.raises(InvalidInput, match="unknown status"):
        status.change_status(
            conn, vehicle_id=v.id, new_status="overdue", changed_by=world.agent.id, reason="no"
        )


def test_list_status_by_ids_returns_exactly_those_vehicles(conn, world):
    a = add_vehicle(conn, world, "B ID 1")
    add_vehicle(conn, world, "B ID 2")
    c = add_vehicle(conn, world, "B ID 3")
    got = status.list_status(conn, vehicle_ids=[c.id, a.id])
    assert sorted(v.plate for v in got) == ["B ID 1", "B ID 3"]
