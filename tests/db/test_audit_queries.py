"""Audit queries behind the audit page: filters with paging, counts, batched export, timeline."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from db import audit, status
from db.errors import InvalidInput
from tests.conftest import add_vehicle


def _change(conn, world, v, new_status: str, who=None, reason: str = "test"):
    return status.change_status(
        conn,
        vehicle_id=v.id,
        new_status=new_status,
        changed_by=(who or world.agent).id,
        reason=reason,
    )


def _backdate(conn, log_id: int, hours: float) -> None:
    conn.execute(
        text(
            "UPDATE vehicle_status_log SET changed_at = now() - make_interval(secs => :s)"
            " WHERE id = :id"
        ),
        {"s": hours * 3600, "id": log_id},
    )


def test_plate_filter_matches_part_of_a_plate_and_misread_characters(conn, world):
    a = add_vehicle(conn, world, "B QF 101")
    b = add_vehicle(conn, world, "B QF 102")
    add_vehicle(conn, world, "M ZZ 9")
    _change(conn, world, a, "cleaning")
    _change(conn, world, b, "cleaning")

    part = audit.LogFilter(plate="qf 10")
    assert {e.plate for e in audit.history_page(conn, filters=part)} == {"B QF 101", "B QF 102"}
    # O for 0 and I for 1, as a dirty plate is misread: still that one car.
    misread = audit.LogFilter(plate="BQF1O1")
    assert [(e.plate, e.new_status) for e in audit.history_page(conn, filters=misread)] == [
        ("B QF 101", "cleaning"),
        ("B QF 101", "available"),
    ]
    assert audit.count_history(conn, filters=part) == 4
    with pytest.raises(InvalidInput, match="no letters or digits"):
        audit.count_history(conn, filters=audit.LogFilter(plate=" - "))


def test_pages_and_count_follow_every_filter(conn, world):
    cars = [add_vehicle(conn, world, f"B PG {n}") for n in range(1, 4)]
    for car in cars:
        _change(conn, world, car, "cleaning", who=world.agent2)
        _change(conn, world, car, "available", who=world.agent2)
    by_ben = audit.LogFilter(user_id=world.agent2.id)
    assert audit.count_history(conn, filters=by_ben) == 6
    first = audit.history_page(conn, filters=by_ben, limit=4)
    second = audit.history_page(conn, filters=by_ben, offset=4, limit=4)
    assert len(first) == 4 and len(second) == 2
    assert [e.id for e in first + second] == sorted((e.id for e in first + second), reverse=True)
    assert audit.count_history(conn, filters=audit.LogFilter(location_id=world.muc.id)) == 0
    assert audit.count_history(conn, filters=audit.LogFilter(vehicle_id=cars[0].id)) == 3
    assert audit.count_history(conn, filters=audit.LogFilter(location_id=world.ber.id)) == 9
    with pytest.raises(InvalidInput):
        audit.history_page(conn, filters=by_ben, offset=-1)


def test_period_filter_bounds_the_log_and_needs_aware_times(conn, world):
    car = add_vehicle(conn, world, "B PD 1")
    old = _change(conn, world, car, "cleaning")
    _backdate(conn, old.log_id, hours=30)
    recent = _change(conn, world, car, "available")
    day = audit.LogFilter(
        vehicle_id=car.id,
        since=world.now - timedelta(hours=50),
        until=world.now - timedelta(hours=10),
    )
    assert [e.id for e in audit.history_page(conn, filters=day)] == [old.log_id]
    since_today = audit.LogFilter(vehicle_id=car.id, since=world.now - timedelta(hours=10))
    assert recent.log_id in [e.id for e in audit.history_page(conn, filters=since_today)]
    assert old.log_id not in [e.id for e in audit.history_page(conn, filters=since_today)]
    with pytest.raises(InvalidInput, match="no time zone"):
        audit.count_history(conn, filters=audit.LogFilter(since=world.now.replace(tzinfo=None)))


def test_batches_walk_the_whole_log_once_even_when_changes_arrive_meanwhile(conn, world):
    car = add_vehicle(conn, world, "B BT 1")
    for _ in range(3):
        _change(conn, world, car, "cleaning")
        _change(conn, world, car, "available")
    mine = audit.LogFilter(vehicle_id=car.id)
    expected = [e.id for e in audit.history_page(conn, filters=mine)]
    seen: list[int] = []
    cursor = None
    for _ in range(10):  # bounded: a cursor that does not advance must fail, not hang
        batch = audit.history_batch(conn, filters=mine, older_than=cursor, limit=3)
        if not batch:
            break
        seen += [e.id for e in batch]
        cursor = (batch[-1].changed_at, batch[-1].id)
        if len(seen) == 3:  # a change lands at the top while the export runs
            _change(conn, world, car, "cleaning")
    assert seen == expected
    assert len(seen) == 7


def test_timeline_gives_spans_with_the_one_running_when_the_period_began(conn, world):
    car = add_vehicle(conn, world, "B TL 1")
    registered = audit.history(conn, vehicle_id=car.id)[0]
    _backdate(conn, registered.id, hours=48)
    wash = _change(conn, world, car, "cleaning", reason="wash")
    _backdate(conn, wash.log_id, hours=5)
    ready = _change(conn, world, car, "available", who=world.agent2, reason="clean now")
    _backdate(conn, ready.log_id, hours=2)

    spans = audit.timeline(conn, vehicle_id=car.id, since=world.now - timedelta(hours=24))
    assert [(s.status, s.changed_by_name, s.location_code) for s in spans] == [
        ("available", "Maria Manager", "BER1"),
        ("cleaning", "Anna Agent", "BER1"),
        ("available", "Ben Booker", "BER1"),
    ]
    assert spans[0].ended_at == spans[1].started_at
    assert spans[1].ended_at == spans[2].started_at
    assert spans[2].ended_at is None
    assert spans[0].time_zone == "Europe/Berlin"

    # A period that ended during the cleaning shows the span running then, ended as it was.
    before_ready = audit.timeline(
        conn,
        vehicle_id=car.id,
        since=world.now - timedelta(hours=4),
        until=world.now - timedelta(hours=3),
    )
    assert [(s.status, s.ended_at) for s in before_ready] == [("cleaning", spans[2].started_at)]


def test_authors_list_staff_and_system_accounts_by_name(conn, world):
    from db import fleet

    fleet.feed_user_id(conn, "returns")
    fleet.create_user(conn, username="aaron", full_name="Aaron Admin", role="admin")
    names = [a.full_name for a in audit.authors(conn)]
    assert names[0] == "Aaron Admin"
    assert names == sorted(names)
    assert {"Anna Agent", "Ben Booker", "Maria Manager", "Returns feed"} <= set(names)
