"""Returns feed parsing: typed check-ins, and each bad row rejected with a reason to act on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from pipeline.feeds import returns

PLATES = {"B AB 1", "M XY 22"}
LOCATIONS = {"BER1", "MUC1"}
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HEADER = (
    "external_id,version,returned_at,plate,location,contract_id,odometer_km,fuel_percent,"
    "damage_notes\n"
)
GOOD = "RT-1,1,2026-11-25T12:30+01:00,B AB 1,BER1,C-1001,48211,75.5,\n"
COLUMNS = [
    "line",
    "external_id",
    "version",
    "updated_at",
    "returned_at",
    "plate",
    "location",
    "contract_id",
    "odometer_km",
    "fuel_percent",
    "damage_notes",
]


def _csv(*rows: str) -> bytes:
    return (HEADER + "".join(rows)).encode()


def _parse(data: bytes, fmt: str = "csv", now: datetime = NOW) -> returns.ParsedFeed:
    return returns.parse(data, fmt=fmt, known_plates=PLATES, known_locations=LOCATIONS, now=now)


def test_good_csv_row_is_typed_and_updated_at_is_the_return_time():
    parsed = _parse(_csv(GOOD))
    assert parsed.rejects == []
    assert parsed.rows.columns == COLUMNS
    assert parsed.rows.schema["odometer_km"] == pl.Int64
    assert parsed.rows.schema["fuel_percent"] == pl.Float64
    row = parsed.rows.row(0, named=True)
    returned = datetime(2026, 11, 25, 11, 30, tzinfo=UTC)
    assert row == {
        "line": 2,
        "external_id": "RT-1",
        "version": 1,
        "updated_at": returned,
        "returned_at": returned,
        "plate": "B AB 1",
        "location": "BER1",
        "contract_id": "C-1001",
        "odometer_km": 48211,
        "fuel_percent": 75.5,
        "damage_notes": None,
    }


def test_ndjson_with_only_the_required_fields_defaults_version_to_1():
    lines = [
        {"external_id": "RT-2", "returned_at": "2026-11-25T11:58:00Z", "plate": "m xy 22",
         "location": "muc1"},
        {"external_id": "RT-3", "version": 2, "returned_at": "2026-11-25T11:00:00Z",
         "plate": "B AB 1", "location": "BER1", "odometer_km": 0, "fuel_percent": 100,
         "damage_notes": "scratch on the rear bumper"},
    ]  # fmt: skip
    parsed = _parse("\n".join(json.dumps(r) for r in lines).encode(), fmt="ndjson")
    assert parsed.rejects == []
    assert parsed.rows.select(
        "version", "plate", "location", "odometer_km", "fuel_percent"
    ).rows() == [
        (1, "M XY 22", "MUC1", None, None),
        (2, "B AB 1", "BER1", 0, 100.0),
    ]
    assert parsed.rows["damage_notes"].to_list() == [None, "scratch on the rear bumper"]


def test_a_return_up_to_five_minutes_ahead_of_now_is_clock_drift_not_the_future():
    at = (NOW + timedelta(minutes=5)).isoformat()
    parsed = _parse(_csv(GOOD.replace("2026-11-25T12:30+01:00", at)))
    assert parsed.rejects == [] and parsed.rows.height == 1


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (GOOD.replace("RT-1,", ","), "external_id is missing"),
        (GOOD.replace(",2026-11-25T12:30+01:00,", ",,"), "returned_at is missing"),
        (GOOD.replace(",B AB 1,", ",,"), "plate is missing"),
        (GOOD.replace("RT-1,1,", "RT-1,-1,"), "version must be a whole number of at least 1"),
        (GOOD.replace("+01:00", ""), "returned_at must be an ISO 8601 time with its UTC offset"),
        (GOOD.replace("B AB 1", "B ZZ 404"), "unknown plate"),
        (GOOD.replace("BER1", "JFK1"), "unknown location"),
        (GOOD.replace("48211", "-5"), "odometer_km must be a whole number, 0 or more"),
        (GOOD.replace("48211", "48.2k"), "odometer_km must be a whole number, 0 or more"),
        (GOOD.replace("75.5", "120"), "fuel_percent must be a number from 0 to 100"),
        (GOOD.replace("75.5", "-1"), "fuel_percent must be a number from 0 to 100"),
        (GOOD.replace("75.5", "NaN"), "fuel_percent must be a number from 0 to 100"),
        (GOOD.replace("75.5", "half"), "fuel_percent must be a number from 0 to 100"),
        (
            GOOD.replace("2026-11-25T12:30+01:00", "2026-11-25T12:06Z"),
            "returned_at is in the future",
        ),
        (GOOD.replace("C-1001", "C" * 101), "contract_id is longer than 100 characters"),
    ],
)
def test_each_bad_row_is_rejected_with_its_reason_and_good_rows_still_load(row, reason):
    parsed = _parse(_csv(GOOD, row, GOOD.replace("RT-1", "RT-2")))
    assert parsed.rows["external_id"].to_list() == ["RT-1", "RT-2"]
    assert parsed.rows["line"].to_list() == [2, 4]
    [reject] = parsed.rejects
    assert reject.line == 3
    assert reject.reason.startswith(reason)


def test_now_may_be_given_in_any_zone():
    berlin = NOW.astimezone(ZoneInfo("Europe/Berlin"))
    assert _parse(_csv(GOOD), now=berlin).rejects == []
    late = GOOD.replace("2026-11-25T12:30+01:00", "2026-11-25T13:30+01:00")
    assert [r.reason[:28] for r in _parse(_csv(late), now=berlin).rejects] == [
        "returned_at is in the future"
    ]


def test_now_defaults_to_the_current_time_and_must_carry_its_zone():
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    row = GOOD.replace("2026-11-25T12:30+01:00", soon)
    parsed = returns.parse(_csv(row), fmt="csv", known_plates=PLATES, known_locations=LOCATIONS)
    assert [r.reason[:28] for r in parsed.rejects] == ["returned_at is in the future"]
    with pytest.raises(ValueError, match="timezone-aware"):
        _parse(_csv(GOOD), now=datetime(2026, 11, 25, 12))
