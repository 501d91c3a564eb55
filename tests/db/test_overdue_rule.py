"""One overdue rule everywhere: configured thresholds, levels that never drop, the entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from db import overdue
from db.errors import InvalidInput
from db.notifications import MIN_OVERDUE_LEVEL
from fleet.settings import PROJECT_ROOT, Settings
from tests.conftest import add_vehicle
from tests.db.factories import rental_under_way

DEFAULTS = overdue.DEFAULT_THRESHOLDS
LATER = (0, 240, 480)  # level 2 from 4 h late: a rental 3 h late is level 1 under these


def _escalations(conn, vehicle_id):
    return (
        conn.execute(
            text(
                "SELECT payload ->> 'escalation_level' FROM availability_events"
                " WHERE vehicle_id = :v AND kind = 'overdue_escalated' ORDER BY id"
            ),
            {"v": vehicle_id},
        )
        .scalars()
        .all()
    )


def test_the_thresholds_come_from_the_settings_through_one_function():
    assert overdue.configured_thresholds(Settings(overdue_thresholds_minutes=[0, 30, 60])) == (
        0,
        30,
        60,
    )
    assert overdue.configured_thresholds(Settings()) == DEFAULTS


def test_configured_thresholds_that_cannot_work_name_the_setting():
    with pytest.raises(InvalidInput, match="increasing") as err:
        overdue.configured_thresholds(Settings(overdue_thresholds_minutes=[120, 0]))
    assert err.value.field == "overdue_thresholds_minutes"
    assert "FLEET_OVERDUE_THRESHOLDS_MINUTES" in err.value.hint


def test_a_stored_level_never_goes_down_while_its_alert_is_open(conn, world):
    v = add_vehicle(conn, world, "B RU 1")
    rental_under_way(conn, world, v, start=world.at(-20), end=world.at(-3))
    overdue.refresh_overdue(conn, now=world.now, thresholds=DEFAULTS)  # 3 h late: level 2

    # A refresh under higher thresholds (a config change, a process on old settings) would
    # compute level 1: the alert keeps level 2, silently, and nothing is announced.
    quiet = overdue.refresh_overdue(conn, now=world.at(0.5), thresholds=LATER)
    assert quiet.model_dump() == {"open": 1, "new": 0, "escalated": 0, "resolved": 0}
    [alert] = overdue.open_alerts(conn)
    assert alert["escalation_level"] == 2
    assert alert["estimated_late_fee"] == Decimal("48.00")  # the fee still follows the clock
    [entry] = overdue.list_overdue(conn, now=world.at(0.5), thresholds=LATER)
    assert entry.escalation_level == 2 and entry.escalated

    # Back on the first thresholds: level 2 was already announced, so no second crossing.
    again = overdue.refresh_overdue(conn, now=world.at(1), thresholds=DEFAULTS)
    assert again.escalated == 0
    assert _escalations(conn, v.id) == ["2"]


def test_the_entry_says_escalated_from_the_level_staff_are_notified_at(conn, world):
    late = add_vehicle(conn, world, "B RU 2")
    rental_under_way(conn, world, late, start=world.at(-20), end=world.at(-1))
    later = add_vehicle(conn, world, "B RU 3")
    rental_under_way(conn, world, later, start=world.at(-20), end=world.at(-3))

    rows = {r.plate: r for r in overdue.list_overdue(conn, now=world.now)}

    assert MIN_OVERDUE_LEVEL == 2
    assert (rows["B RU 2"].escalation_level, rows["B RU 2"].escalated) == (1, False)
    assert (rows["B RU 3"].escalation_level, rows["B RU 3"].escalated) == (2, True)


def test_the_last_contact_attempt_survives_a_resolved_and_reopened_alert(conn, world):
    v = add_vehicle(conn, world, "B RU 4")
    rental_under_way(conn, world, v, start=world.at(-20), end=world.at(-3))
    overdue.refresh_overdue(conn, now=world.now)
    [alert] = overdue.open_alerts(conn)
    overdue.record_contact(conn, overdue_id=alert["id"], contacted_by=world.agent.id, note="sms")
    [contacted] = overdue.open_alerts(conn)
    called = contacted["last_contact_attempt"]
    overdue.resolve_alert(conn, overdue_id=alert["id"], resolved_by=world.manager.id, notes="ok")

    # Resolved but still late: the entry still says when the customer was last tried.
    [between] = overdue.list_overdue(conn, now=world.at(1))
    assert between.last_contact_attempt == called

    overdue.refresh_overdue(conn, now=world.at(4))  # 7 h late: level 3 reopens the alert

    [reopened] = overdue.open_alerts(conn)
    assert reopened["id"] != alert["id"]
    assert reopened["last_contact_attempt"] == called
    [entry] = overdue.list_overdue(conn, now=world.at(4))
    assert entry.last_contact_attempt == called and entry.escalation_level == 3


def test_a_late_fee_day_is_24_elapsed_hours_across_a_dst_change(conn, world):
    """Europe/Berlin falls back on 25 Oct 2026: that local day has 25 hours, a fee day 24."""
    v = add_vehicle(conn, world, "B RU 5")
    due = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # Sun 25 Oct 00:00 in Berlin (CEST)
    rental_under_way(conn, world, v, start=due - timedelta(days=3), end=due)

    # Mon 26 Oct 00:00 in Berlin (CET) is one local calendar day later but 25 hours.
    [entry] = overdue.list_overdue(conn, now=datetime(2026, 10, 25, 23, 0, tzinfo=UTC))

    assert entry.overdue_by == timedelta(hours=25)
    # One 24 h day (49) plus one started hour (12), counted from the due time.
    assert entry.estimated_late_fee == Decimal("61.00")


def test_docs_say_who_is_notified_when_and_how_the_fee_and_levels_work():
    # Words, not line breaks: prose may be reflowed.
    readme = " ".join((PROJECT_ROOT / "README.md").read_text().split())
    api = " ".join((PROJECT_ROOT / "docs" / "api.md").read_text().split())
    overdue_doc = api[api.index("### Overdue") : api.index("### Audit")]

    assert "fleet overdue refresh" in readme
    assert "from level 2" in readme and "webhook" in readme.lower()
    assert "before `FLEET_NOTIFY_WEBHOOK_URLS`" in readme  # stale alerts are never sent later
    assert "refreshes the overdue alerts when it starts" in readme
    for doc in (readme, overdue_doc):
        assert "never goes down" in doc
        assert "end of the grace period" in doc and "due time" in doc
        assert "24 elapsed hours" in doc and "daylight-saving" in doc
    assert '"escalated": true' in overdue_doc
    assert "last_contact_attempt" in overdue_doc and "reopen" in overdue_doc
