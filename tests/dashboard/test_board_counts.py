"""The board's counts: whole numbers per status and location, read once per event batch."""

from __future__ import annotations

from dashboard.live import COUNT_COLUMNS, SharedCounts, counts_frame
from db import status

SHOWN = [c.replace("_", " ") for c in COUNT_COLUMNS]


def test_counts_frame_has_every_status_and_a_row_for_cars_between_lots():
    rows = [
        {"location": "BER1", "status": "available", "vehicles": 3},
        {"location": "BER1", "status": "overdue", "vehicles": 1},
        {"location": None, "status": "in_transit", "vehicles": 2},
    ]
    frame = counts_frame(rows).set_index("location")
    assert list(frame.columns) == SHOWN
    assert frame.loc["BER1", "available"] == 3 and frame.loc["BER1", "overdue"] == 1
    assert frame.loc["(between lots)", "in transit"] == 2
    assert str(frame["available"].dtype).startswith("int")


def test_counts_frame_of_an_empty_fleet_has_the_columns():
    assert list(counts_frame([]).columns) == ["location", *SHOWN]


def test_shared_counts_read_once_per_seq(conn, world, monkeypatch):
    calls = []
    real = status.status_counts
    monkeypatch.setattr(status, "status_counts", lambda c: calls.append(1) or real(c))
    shared = SharedCounts()
    first = shared.get(conn, 5)
    assert shared.get(conn, 5) is first and shared.get(conn, 4) is first
    assert len(calls) == 1
    shared.get(conn, 6)
    assert len(calls) == 2
