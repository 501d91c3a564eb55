"""The board's vehicle table: rows in staff words and local time, patched cell by cell."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboard.vehicles import VehicleTable, badge, frame, row
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


def test_apply_patches_only_changed_cells_and_appends_new_vehicles():
    table = VehicleTable([_vehicle(1), _vehicle(2)])
    sent = []
    table.widget.patch = lambda value, as_index=True: sent.append((value, as_index))
    table.apply([_vehicle(2, "cleaning"), _vehicle(1), _vehicle(3)])
    assert sent == [({"status": [(1, badge("cleaning"))]}, False)]
    assert list(table.widget.value.index) == [1, 2, 3]
    assert table.widget.selection == [1, 0]
    assert list(frame([_vehicle(4)]).index) == [4]
