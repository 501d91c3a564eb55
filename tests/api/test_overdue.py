"""Overdue returns over HTTP: the chase list, raising alerts, contact attempts, resolving."""

from __future__ import annotations

from datetime import datetime

from tests.db.factories import rental_under_way


def _late_rental(api, engine):
    """Alice's rental, due back 3 hours before the world's now: 2-3 hours late in real time."""
    w = api.world
    with engine.begin() as c:
        return rental_under_way(c, w, api.vehicles[0], start=w.at(-20), end=w.at(-3))


def test_late_rental_is_listed_alerted_chased_and_resolved_by_a_manager(api, engine):
    w = api.world
    rental = _late_rental(api, engine)
    with api.client("analyst") as c:
        before = c.get("/api/availability/overdue")
    assert before.status_code == 200, before.text
    [late] = before.json()
    assert (late["block_id"], late["plate"], late["customer_name"]) == (
        rental.id,
        api.vehicles[0].plate,
        "Alice Schmidt",
    )
    assert (late["customer_phone"], late["customer_email"]) == (
        "+49 30 1234567",
        "alice@example.com",
    )
    assert late["escalation_level"] == 2  # two hours late or more
    assert late["estimated_late_fee"] == "36.00"  # three started hours at 12
    assert datetime.fromisoformat(late["expected_return"]) == w.at(-3)
    assert late["alert_id"] is None  # no check has run yet

    with api.client("agent") as c:
        refreshed = c.post("/api/availability/overdue/refresh")
        alert_id = c.get("/api/availability/overdue").json()[0]["alert_id"]
        contacted = c.post(
            "/api/availability/alerts/contact",
            json={"overdue_id": alert_id, "note": "called, voicemail"},
        )
        chased = c.get("/api/availability/overdue").json()[0]
        refused = c.post(
            "/api/availability/alerts/resolve",
            json={"overdue_id": alert_id, "note": "customer on the way"},
        )
    assert refreshed.status_code == 200
    assert refreshed.json() == {"open": 1, "new": 1, "escalated": 0, "resolved": 0}
    assert alert_id is not None
    assert contacted.status_code == 204
    assert chased["last_contact_attempt"] is not None
    assert "called, voicemail" in chased["alert_notes"]
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"

    with api.client("manager") as c:
        resolved = c.post(
            "/api/availability/alerts/resolve",
            json={"overdue_id": alert_id, "note": "customer on the way"},
        )
        after = c.get("/api/availability/overdue").json()
        twice = c.post(
            "/api/availability/alerts/resolve",
            json={"overdue_id": alert_id, "note": "again"},
        )
    assert resolved.status_code == 204
    assert after[0]["alert_id"] is None  # still late, but nobody needs to act on it now
    assert twice.status_code == 404 and twice.json()["field"] == "overdue_id"
    with engine.connect() as c:
        by = c.exec_driver_sql(
            "SELECT resolved_by FROM overdue_vehicles WHERE id = %s", (alert_id,)
        ).scalar()
    assert by == w.manager.id


def test_analyst_cannot_raise_or_note_alerts(api, engine):
    _late_rental(api, engine)
    with api.client("analyst") as c:
        refresh = c.post("/api/availability/overdue/refresh")
        contact = c.post("/api/availability/alerts/contact", json={"overdue_id": 1, "note": "x"})
    assert refresh.status_code == 403 and contact.status_code == 403


def test_bad_alert_input_names_the_field_and_never_500s(api, engine):
    _late_rental(api, engine)
    with api.client("manager") as c:
        cases = {
            "blank note": (
                c.post("/api/availability/alerts/resolve", json={"overdue_id": 1, "note": "  "}),
                422,
                "note",
            ),
            "no id": (
                c.post("/api/availability/alerts/resolve", json={"note": "done"}),
                422,
                "overdue_id",
            ),
            "id not a number": (
                c.post("/api/availability/alerts/contact", json={"overdue_id": "x", "note": "y"}),
                422,
                "overdue_id",
            ),
            "unknown alert": (
                c.post(
                    "/api/availability/alerts/contact", json={"overdue_id": 999_999, "note": "y"}
                ),
                404,
                "overdue_id",
            ),
            "bad lot filter": (
                c.get("/api/availability/overdue", params={"location_id": "BER1"}),
                422,
                "location_id",
            ),
        }
    for name, (r, code, field) in cases.items():
        assert (r.status_code, r.json().get("field")) == (code, field), (name, r.text)
