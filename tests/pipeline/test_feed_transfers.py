"""Transfer feed parsing: typed rows, and each bad row rejected with a reason to act on."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pipeline.feeds import transfers

PLATES = {"B AB 1", "M XY 22"}
LOCATIONS = {"BER1", "MUC1"}
HEADER = (
    "external_id,version,updated_at,event,plate,from_location,to_location,departed_at,eta,"
    "arrived_at\n"
)
DISPATCHED = (
    "TR-1,1,2026-11-25T08:05+01:00,dispatched,B AB 1,BER1,MUC1,"
    "2026-11-25T08:00+01:00,2026-11-25T15:30+01:00,\n"
)
ARRIVED = (
    "TR-1,2,2026-11-25T15:10+01:00,arrived,B AB 1,BER1,MUC1,"
    "2026-11-25T08:00+01:00,2026-11-25T15:30+01:00,2026-11-25T15:05+01:00\n"
)
COLUMNS = [
    "line",
    "external_id",
    "version",
    "updated_at",
    "event",
    "plate",
    "from_location",
    "to_location",
    "departed_at",
    "eta",
    "arrived_at",
]


def _csv(*rows: str) -> bytes:
    return (HEADER + "".join(rows)).encode()


def _parse(data: bytes, fmt: str = "csv") -> transfers.ParsedFeed:
    return transfers.parse(data, fmt=fmt, known_plates=PLATES, known_locations=LOCATIONS)


def test_dispatch_and_arrival_rows_are_typed():
    parsed = _parse(_csv(DISPATCHED, ARRIVED))
    assert parsed.rejects == []
    assert parsed.rows.columns == COLUMNS
    dispatched, arrived = parsed.rows.iter_rows(named=True)
    assert dispatched["departed_at"] == datetime(2026, 11, 25, 7, tzinfo=UTC)
    assert dispatched["eta"] == datetime(2026, 11, 25, 14, 30, tzinfo=UTC)
    assert dispatched["arrived_at"] is None
    assert (arrived["line"], arrived["version"], arrived["event"]) == (3, 2, "arrived")
    assert arrived["arrived_at"] == datetime(2026, 11, 25, 14, 5, tzinfo=UTC)


def test_an_arrival_needs_only_its_arrival_time():
    record = {
        "external_id": "TR-9",
        "version": 1,
        "updated_at": "2026-11-25T09:00:00-05:00",
        "event": "arrived",
        "plate": "M XY 22",
        "from_location": "MUC1",
        "to_location": "BER1",
        "arrived_at": "2026-11-25T08:55:00-05:00",
    }
    parsed = _parse(json.dumps(record).encode(), fmt="ndjson")
    assert parsed.rejects == []
    row = parsed.rows.row(0, named=True)
    assert (row["departed_at"], row["eta"]) == (None, None)
    assert row["arrived_at"] == datetime(2026, 11, 25, 13, 55, tzinfo=UTC)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (DISPATCHED.replace(",BER1,MUC1,", ",,MUC1,"), "from_location is missing"),
        (DISPATCHED.replace("TR-1,1,", "TR-1,,"), "version is missing"),
        (DISPATCHED.replace("TR-1,1,", "TR-1,v1,"), "version must be a whole number"),
        (DISPATCHED.replace("dispatched", "lost"), "event must be one of dispatched, arrived"),
        (
            DISPATCHED.replace("2026-11-25T15:30+01:00", ""),
            "eta is missing (needed when event is dispatched)",
        ),
        (
            DISPATCHED.replace(",2026-11-25T08:00+01:00,", ",,"),
            "departed_at is missing (needed when event is dispatched)",
        ),
        (
            ARRIVED.replace(",2026-11-25T15:05+01:00", ","),
            "arrived_at is missing (needed when event is arrived)",
        ),
        (
            DISPATCHED.replace("T15:30+01:00", "T15:30"),
            "eta must be an ISO 8601 time with its UTC offset",
        ),
        (
            ARRIVED.replace("T15:05+01:00", "T25:05+01:00"),
            "arrived_at must be an ISO 8601 time with its UTC offset",
        ),
        (DISPATCHED.replace("B AB 1", "NOPE 1"), "unknown plate"),
        (DISPATCHED.replace(",BER1,MUC1,", ",HAM1,MUC1,"), "unknown from_location"),
        (DISPATCHED.replace(",BER1,MUC1,", ",BER1,HAM1,"), "unknown to_location"),
        (DISPATCHED.replace(",BER1,MUC1,", ",BER1,ber1,"), "from_location and to_location are"),
        (DISPATCHED.replace("T15:30+01:00", "T07:30+01:00"), "eta is not after departed_at"),
        (ARRIVED.replace("T15:05+01:00", "T07:59+01:00"), "arrived_at is before departed_at"),
    ],
)
def test_each_bad_row_is_rejected_with_its_reason_and_good_rows_still_load(row, reason):
    parsed = _parse(_csv(DISPATCHED, row, ARRIVED))
    assert parsed.rows["line"].to_list() == [2, 4]
    [reject] = parsed.rejects
    assert reject.line == 3
    assert reject.reason.startswith(reason)


def test_an_arrival_at_the_moment_of_departure_is_allowed():
    row = ARRIVED.replace("T15:05+01:00", "T08:00+01:00")
    assert _parse(_csv(row)).rejects == []
