"""The board's counts: whole numbers per status and location, read once for every board."""

from __future__ import annotations

from dashboard.live import COUNT_COLUMNS, SharedReads, counts_frame, counts_rows
from db import status
from tests.conftest import add_vehicle

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


def test_counts_rows_are_keyed_by_location_with_whole_numbers():
    rows = counts_rows([{"location": "BER1", "status": "rented", "vehicles": 2}])
    assert rows[0][0] == "BER1"
    assert rows[0][1]["rented"] == "2" and rows[0][1]["available"] == "0"


def test_shared_reads_read_each_vehicle_and_the_counts_once_per_seq(conn, world, monkeypatch):
    counted, listed = [], []
    real_counts, real_list = status.status_counts, status.list_status
    monkeypatch.setattr(status, "status_counts", lambda c: counted.append(1) or real_counts(c))

    def list_status(c, **kw):
        listed.append(kw["vehicle_ids"])
        return real_list(c, **kw)

    monkeypatch.setattr(status, "list_status", list_status)
    a, b = (add_vehicle(conn, world, plate).id for plate in ("B SR 1", "B SR 2"))
    shared = SharedReads()
    assert shared.cached([a], 5) is None
    first, counts = shared.get(conn, [a], 5)
    assert shared.cached([a], 5) == (first, counts) and shared.cached([a, b], 5) is None
    assert [v.vehicle_id for v in first] == [a]
    # Other boards asking about the same or an older event reuse what was read.
    again, counts_again = shared.get(conn, [a], 5)
    assert again == first and counts_again is counts
    shared.get(conn, [a], 4)
    assert listed == [[a]] and len(counted) == 1
    # A newer event reads again, and only the vehicles not yet read for it.
    shared.get(conn, [b], 6)
    shared.get(conn, [a, b], 6)
    assert listed == [[a], [b], [a]] and len(counted) == 2
