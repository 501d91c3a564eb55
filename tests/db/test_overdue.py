"""Overdue returns: escalation levels, late fees, the chase list and the alerts table."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from db import overdue, rentals
from db.errors import InvalidInput, NotFound
from tests.conftest import add_vehicle
from tests.db.factories import booking, rental_under_way

ECON = {"hourly_rate": Decimal("12"), "daily_rate": Decimal("49")}
GRACE = timedelta(minutes=30)


def _events(conn, vehicle_id):
    return conn.execute(
        text(
            "SELECT kind, actor_id, payload FROM availability_events"
            " WHERE vehicle_id = :v AND kind LIKE 'overdue%' ORDER BY id"
        ),
        {"v": vehicle_id},
    ).all()


@pytest.mark.parametrize(
    ("late", "level"),
    [
        (timedelta(0), 1),
        (timedelta(minutes=1), 1),
        (timedelta(minutes=119), 1),
        (timedelta(hours=2), 2),
        (timedelta(hours=5, minutes=59), 2),
        (timedelta(hours=6), 3),
        (timedelta(hours=23, minutes=59), 3),
        (timedelta(hours=24), 4),
        (timedelta(days=5), 4),
    ],
)
def test_escalation_starts_at_two_hours_late_and_climbs_with_thresholds(late, level):
    assert overdue.escalation_level(late) == level


def test_custom_thresholds_change_when_levels_begin():
    assert overdue.escalation_level(timedelta(minutes=59), (0, 60)) == 1
    assert overdue.escalation_level(timedelta(minutes=60), (0, 60)) == 2
    assert overdue.escalation_level(timedelta(hours=30), (0, 60)) == 2


@pytest.mark.parametrize("thresholds", [(), (120, 0), (0, 60, 60), (-10, 0, 120)])
def test_thresholds_that_are_not_increasing_minutes_from_zero_are_refused(conn, thresholds):
    with pytest.raises(InvalidInput, match="increasing") as err:
        overdue.escalation_level(timedelta(hours=1), thresholds)
    assert err.value.field == "thresholds"
    with pytest.raises(InvalidInput):
        overdue.list_overdue(conn, thresholds=thresholds)
    with pytest.raises(InvalidInput):
        overdue.refresh_overdue(conn, thresholds=thresholds)


@pytest.mark.parametrize(
    ("late", "fee"),
    [
        (timedelta(0), "0.00"),
        (timedelta(minutes=30), "0.00"),  # grace is inclusive
        (timedelta(minutes=31), "12.00"),  # past grace: the first started hour is charged
        (timedelta(hours=1), "12.00"),
        (timedelta(hours=1, minutes=1), "24.00"),  # every started hour counts
        (timedelta(hours=4), "48.00"),
        (timedelta(hours=5), "49.00"),  # capped at the daily rate
        (timedelta(hours=23, minutes=59), "49.00"),
        (timedelta(hours=24), "49.00"),
        (timedelta(hours=25), "61.00"),  # a day plus one hour
        (timedelta(hours=47), "98.00"),  # a day plus a capped second day
        (timedelta(days=3), "147.00"),
    ],
)
def test_late_fee_has_grace_then_charges_started_hours_capped_per_day(late, fee):
    assert overdue.late_fee(late, grace_period=GRACE, **ECON) == Decimal(fee)


def test_late_fee_without_grace_charges_from_the_first_minute():
    assert overdue.late_fee(timedelta(minutes=1), grace_period=timedelta(0), **ECON) == Decimal(
        "12.00"
    )


def test_overdue_list_shows_customer_contact_fee_and_threatened_next_booking(conn, world):
    v = add_vehicle(conn, world, "B OD 1")
    rental = rental_under_way(conn, world, v, start=world.at(-27), end=world.at(-3))
    nxt = booking(conn, world, v, start=world.at(5), end=world.at(9), customer=world.bob)

    [late] = overdue.list_overdue(conn, now=world.now)

    assert late.block_id == rental.id and late.plate == "B OD 1"
    assert late.customer_name == "Alice Schmidt"
    assert late.customer_phone == "+49 30 1234567"
    assert late.customer_email == "alice@example.com"
    assert late.location_code == "BER1" and late.time_zone == "Europe/Berlin"
    assert late.expected_return == world.at(-3)
    assert late.overdue_by == timedelta(hours=3)
    assert late.escalation_level == 2
    assert late.estimated_late_fee == Decimal("36.00")
    assert (late.next_block_id, late.next_block_start) == (nxt.id, world.at(5))


def test_overdue_list_skips_rentals_not_yet_due_or_returned_and_sorts_most_late_first(conn, world):
    on_time = add_vehicle(conn, world, "B OD 2")
    rental_under_way(conn, world, on_time, start=world.at(-5), end=world.at(1))
    returned = add_vehicle(conn, world, "B OD 3")
    back = rental_under_way(conn, world, returned, start=world.at(-30), end=world.at(-10))
    rentals.return_vehicle(conn, block_id=back.id, received_by=world.agent.id, at=world.at(-1))
    slightly = add_vehicle(conn, world, "B OD 4")
    rental_under_way(conn, world, slightly, start=world.at(-8), end=world.at(-1))
    badly = add_vehicle(conn, world, "B OD 5", category=world.suv)
    rental_under_way(conn, world, badly, start=world.at(-80), end=world.at(-30), customer=world.bob)

    rows = overdue.list_overdue(conn, now=world.now)

    assert [r.plate for r in rows] == ["B OD 5", "B OD 4"]
    assert [r.escalation_level for r in rows] == [4, 1]
    # SUV, 30 h late: one day (89) plus six started hours capped at a day's rate (89)
    assert rows[0].estimated_late_fee == Decimal("178.00")
    assert rows[0].next_block_id is None and rows[0].next_block_start is None
    # a later clock makes the not-yet-due rental late too
    assert len(overdue.list_overdue(conn, now=world.at(2))) == 3


def test_overdue_list_filters_by_return_location(conn, world):
    ber_car = add_vehicle(conn, world, "B OD 6")
    rental_under_way(conn, world, ber_car, start=world.at(-10), end=world.at(-2))
    muc_car = add_vehicle(conn, world, "M OD 7", location=world.muc)
    rental_under_way(
        conn, world, muc_car, start=world.at(-10), end=world.at(-2), location=world.muc
    )

    rows = overdue.list_overdue(conn, now=world.now, location_id=world.muc.id)

    assert [(r.plate, r.location_code) for r in rows] == [("M OD 7", "MUC1")]


def test_refresh_opens_an_alert_per_late_rental_and_announces_it(conn, world):
    v = add_vehicle(conn, world, "B OD 8")
    rental = rental_under_way(conn, world, v, start=world.at(-20), end=world.at(-3))

    summary = overdue.refresh_overdue(conn, now=world.now)

    assert summary.model_dump() == {"open": 1, "new": 1, "escalated": 0, "resolved": 0}
    [alert] = overdue.open_alerts(conn)
    assert alert["plate"] == "B OD 8" and alert["block_id"] == rental.id
    assert alert["customer_id"] == world.alice.id
    assert alert["escalation_level"] == 2
    assert alert["estimated_late_fee"] == Decimal("36.00")
    assert alert["expected_return"] == world.at(-3)
    [event] = _events(conn, v.id)
    assert event.kind == "overdue_escalated"
    assert event.payload["plate"] == "B OD 8" and event.payload["escalation_level"] == 2


def test_refresh_again_changes_nothing_until_the_rental_climbs_a_level(conn, world):
    v = add_vehicle(conn, world, "B OD 9")
    rental_under_way(conn, world, v, start=world.at(-20), end=world.at(-3))
    overdue.refresh_overdue(conn, now=world.now)

    same = overdue.refresh_overdue(conn, now=world.at(1))
    assert same.model_dump() == {"open": 1, "new": 0, "escalated": 0, "resolved": 0}
    assert len(_events(conn, v.id)) == 1
    assert overdue.open_alerts(conn)[0]["estimated_late_fee"] == Decimal("48.00")

    later = overdue.refresh_overdue(conn, now=world.at(4))  # 7 h late: level 3

    assert later.model_dump() == {"open": 1, "new": 0, "escalated": 1, "resolved": 0}
    [alert] = overdue.open_alerts(conn)
    assert alert["escalation_level"] == 3 and alert["estimated_late_fee"] == Decimal("49.00")
    kinds = [(e.kind, e.payload["escalation_level"]) for e in _events(conn, v.id)]
    assert kinds == [("overdue_escalated", 2), ("overdue_escalated", 3)]


def test_returned_rental_closes_its_alert_automatically(conn, world):
    v = add_vehicle(conn, world, "B OD 10")
    rental = rental_under_way(conn, world, v, start=world.at(-20), end=world.at(-3))
    overdue.refresh_overdue(conn, now=world.now)
    rentals.return_vehicle(conn, block_id=rental.id, received_by=world.agent.id, at=world.now)

    summary = overdue.refresh_overdue(conn, now=world.at(1))

    assert summary.model_dump() == {"open": 0, "new": 0, "escalated": 0, "resolved": 1}
    assert overdue.open_alerts(conn) == []
    closed = conn.execute(
        text("SELECT resolved_at, resolution_notes FROM overdue_vehicles WHERE block_id = :b"),
        {"b": rental.id},
    ).one()
    assert closed.resolved_at == world.at(1)
    assert "returned or extended" in closed.resolution_notes
    last = _events(conn, v.id)[-1]
    assert last.kind == "overdue_resolved"
    assert last.payload == {"block_id": rental.id, "automatic": True}


def test_extended_rental_closes_its_alert(conn, world):
    v = add_vehicle(conn, world, "B OD 11")
    rental = rental_under_way(conn, world, v, start=world.at(-20), end=world.at(-3))
    overdue.refresh_overdue(conn, now=world.now)
    rentals.extend_rental(
        conn, block_id=rental.id, new_end=world.at(24), extended_by=world.agent.id
    )

    assert overdue.refresh_overdue(conn, now=world.now).resolved == 1
    assert overdue.list_overdue(conn, now=world.now) == []


def test_resolved_alert_stays_resolved_until_the_rental_reaches_a_higher_level(conn, world):
    v = add_vehicle(conn, world, "B OD 12")
    rental = rental_under_way(conn, world, v, start=world.at(-20), end=world.at(-3))
    overdue.refresh_overdue(conn, now=world.now)
    [alert] = overdue.open_alerts(conn)
    overdue.resolve_alert(
        conn,
        overdue_id=alert["id"],
        resolved_by=world.manager.id,
        notes="customer called: stuck in traffic",
    )

    quiet = overdue.refresh_overdue(conn, now=world.at(2))  # 5 h late: still level 2
    assert quiet.model_dump() == {"open": 1, "new": 0, "escalated": 0, "resolved": 0}
    assert overdue.open_alerts(conn) == []

    overdue.refresh_overdue(conn, now=world.at(4))  # 7 h late: level 3

    [reopened] = overdue.open_alerts(conn)
    assert reopened["block_id"] == rental.id and reopened["escalation_level"] == 3
    assert reopened["id"] != alert["id"]
    assert [e.kind for e in _events(conn, v.id)] == [
        "overdue_escalated",
        "overdue_resolved",
        "overdue_escalated",
    ]


def test_resolving_an_alert_records_who_and_how_and_tells_listeners(conn, world):
    v = add_vehicle(conn, world, "B OD 13")
    rental = rental_under_way(conn, world, v, start=world.at(-20), end=world.at(-3))
    overdue.refresh_overdue(conn, now=world.now)
    [alert] = overdue.open_alerts(conn)

    overdue.resolve_alert(
        conn, overdue_id=alert["id"], resolved_by=world.manager.id, notes="  car found  "
    )

    row = conn.execute(
        text("SELECT resolved_at, resolved_by, resolution_notes FROM overdue_vehicles"),
    ).one()
    assert row.resolved_at is not None and row.resolved_by == world.manager.id
    assert row.resolution_notes == "car found"
    event = _events(conn, v.id)[-1]
    assert event.kind == "overdue_resolved" and event.actor_id == world.manager.id
    assert event.payload == {"overdue_id": alert["id"], "block_id": rental.id, "notes": "car found"}
    with pytest.raises(NotFound, match="no open overdue alert"):
        overdue.resolve_alert(
            conn, overdue_id=alert["id"], resolved_by=world.manager.id, notes="again"
        )


def test_resolving_needs_a_note_and_an_open_alert(conn, world):
    v = add_vehicle(conn, world, "B OD 14")
    rental_under_way(conn, world, v, start=world.at(-20), end=world.at(-3))
    overdue.refresh_overdue(conn, now=world.now)
    [alert] = overdue.open_alerts(conn)

    with pytest.raises(InvalidInput, match="how the alert was resolved"):
        overdue.resolve_alert(conn, overdue_id=alert["id"], resolved_by=world.agent.id, notes=" ")
    with pytest.raises(NotFound):
        overdue.resolve_alert(conn, overdue_id=alert["id"] + 999, resolved_by=1, notes="x")
    assert overdue.open_alerts(conn)[0]["resolved_at"] is None


def test_contact_attempts_are_noted_on_the_open_alert(conn, world):
    v = add_vehicle(conn, world, "B OD 15")
    rental_under_way(conn, world, v, start=world.at(-20), end=world.at(-3))
    overdue.refresh_overdue(conn, now=world.now)
    [alert] = overdue.open_alerts(conn)
    assert alert["last_contact_attempt"] is None

    overdue.record_contact(
        conn, overdue_id=alert["id"], contacted_by=world.agent.id, note="called, voicemail"
    )
    overdue.record_contact(conn, overdue_id=alert["id"], contacted_by=world.agent.id, note=" ")

    [after] = overdue.open_alerts(conn)
    assert after["last_contact_attempt"] is not None
    assert after["resolution_notes"] == "called, voicemail\ncontact attempted"
    contacts = [e for e in _events(conn, v.id) if e.kind == "overdue_contacted"]
    assert [e.payload["overdue_id"] for e in contacts] == [alert["id"], alert["id"]]
    assert contacts[0].actor_id == world.agent.id

    overdue.resolve_alert(conn, overdue_id=alert["id"], resolved_by=world.agent.id, notes="back")
    with pytest.raises(NotFound):
        overdue.record_contact(conn, overdue_id=alert["id"], contacted_by=world.agent.id, note="x")
