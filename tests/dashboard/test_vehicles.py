"""The board's vehicle table: rows in staff words and local time, patched cell by cell."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboard.vehicles import VehicleTable, badge, row
from db.status import VehicleStatus

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _vehicle(vid: int, status: str = "available", **extra) -> VehicleStatus:
    base = {
        "vehicle_id": vid,
        "plate": f"B T {vid}",
        "make": "VW",
        "model": "Golf",
        "category_code": "ECON",
        "status": status,
        "location_id": 1,
        "location_code": "BER1",
        "time_zone": "Europe/Berlin",
        "destination_location_id": None,
        "destination_code": None,
        "customer_id": None,
        "customer_name": None,
        "customer_phone": None,
        "customer_email": None,
        "block_id": None,
        "expected_available_at": None,
        "overdue": False,
        "version": 1,
        "last_updated": NOW,
        "updated_by": None,
        "updated_by_name": None,
    }
    return VehicleStatus(**{**base, **extra})


def test_a_late_rental_reads_as_overdue_with_contact_and_local_time():
    late = _vehicle(
        1,
        "rented",
        location_id=None,
        customer_name="Alice Schmidt",
        customer_phone="+49 30 1",
        customer_email="a@example.com",
        expected_available_at=NOW - timedelta(hours=2, minutes=5),
        overdue=True,
    )
    shown = row(late, NOW)
    assert ">OVERDUE<" in shown["status"] and "badge overdue" in shown["status"]
    assert shown["where"] == "with customer"
    assert shown["contact"] == "+49 30 1 · a@example.com"
    assert shown["expected back"] == "Wed 25 Nov 10:55 CET"  # Berlin time, not UTC
    assert shown["return"] == "late 2 h 5 min"
    assert row(_vehicle(2), NOW)["return"] == ""


def test_apply_sends_only_changed_cells_and_appends_new_vehicles():
    table = VehicleTable([_vehicle(1), _vehicle(2)])
    sent = []
    table.widget._send_msg = sent.append
    changed = table.apply([_vehicle(2, "cleaning"), _vehicle(1), _vehicle(3)])
    assert changed == [2]
    assert sent == [{"patch": [[2, {"status": badge("cleaning")}]]}]
    assert table.widget.shown() == [1, 2, 3]


def test_expected_return_sorts_by_the_instant_not_the_text():
    # Wednesday sorts before Tuesday as text; the instant puts Tuesday first.
    wed = _vehicle(1, "rented", expected_available_at=NOW)
    tue = _vehicle(2, "rented", expected_available_at=NOW - timedelta(days=1))
    table = VehicleTable([wed, tue, _vehicle(3)])
    table.widget.sort = "expected back"
    assert table.widget.shown() == [2, 1, 3]
