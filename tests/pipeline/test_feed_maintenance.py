"""Maintenance feed parsing: typed rows, and each bad row rejected with a reason to act on."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest

from pipeline.feeds import maintenance

PLATES = {"B AB 1", "M XY 22"}
LOCATIONS = {"BER1", "MUC1"}
HEADER = "external_id,version,updated_at,event,plate,location,starts_at,ends_at,description\n"
GOOD = (
    "WO-1,1,2026-11-25T08:00+01:00,scheduled,b ab 1,ber1,"
    "2026-12-01T07:00+01:00,2026-12-01T12:00+01:00,oil service\n"
)
EXAMPLE = "2026-12-01T10:00+01:00"
COLUMNS = [
    "line",
    "external_id",
    "version",
    "updated_at",
    "event",
    "plate",
    "location",
    "starts_at",
    "ends_at",
    "description",
]


def _csv(*rows: str) -> bytes:
    return (HEADER + "".join(rows)).encode()


def _parse(data: bytes, fmt: str = "csv") -> maintenance.ParsedFeed:
    return maintenance.parse(data, fmt=fmt, known_plates=PLATES, known_locations=LOCATIONS)


def test_good_csv_rows_are_typed_with_times_in_utc():
    parsed = _parse(_csv(GOOD, GOOD.replace("WO-1,1,", "WO-1,2,").replace("scheduled", "Started")))
    assert parsed.rejects == []
    assert parsed.rows.columns == COLUMNS
    assert parsed.rows.schema["starts_at"] == pl.Datetime("us", "UTC")
    first, second = parsed.rows.iter_rows(named=True)
    assert (first["line"], first["version"], first["plate"], first["location"]) == (
        2,
        1,
        "B AB 1",
        "BER1",
    )
    assert first["starts_at"] == datetime(2026, 12, 1, 6, tzinfo=UTC)
    assert first["ends_at"] == datetime(2026, 12, 1, 11, tzinfo=UTC)
    assert first["description"] == "oil service"
    assert (second["line"], second["version"], second["event"]) == (3, 2, "started")


def test_good_ndjson_rows_read_the_same_and_description_is_optional():
    record = {
        "external_id": "WO-7",
        "version": 3,
        "updated_at": "2026-11-25T07:00:00Z",
        "event": "completed",
        "plate": "M XY 22",
        "location": "MUC1",
        "starts_at": "2026-11-24T08:00:00+01:00",
        "ends_at": "2026-11-24T16:30:00+01:00",
    }
    parsed = _parse(json.dumps(record).encode() + b"\n", fmt="ndjson")
    assert parsed.rejects == []
    row = parsed.rows.row(0, named=True)
    assert (row["line"], row["version"], row["description"]) == (1, 3, None)
    assert row["ends_at"] == datetime(2026, 11, 24, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (GOOD.replace("WO-1,1,", ",1,"), "external_id is missing"),
        (GOOD.replace(",b ab 1,", ",,"), "plate is missing"),
        (GOOD.replace(",ber1,", ",,"), "location is missing"),
        (GOOD.replace(",2026-12-01T12:00+01:00,", ",,"), "ends_at is missing"),
        (GOOD.replace("WO-1,1,", "WO-1,0,"), "version must be a whole number of at least 1"),
        (GOOD.replace("WO-1,1,", "WO-1,1.5,"), "version must be a whole number of at least 1"),
        (GOOD.replace("scheduled", "repaired"), "event must be one of scheduled, started,"),
        (
            GOOD.replace("2026-12-01T07:00+01:00", "2026-12-01T07:00"),
            f"starts_at must be an ISO 8601 time with its UTC offset, like {EXAMPLE}"
            " (this one has no offset)",
        ),
        (
            GOOD.replace("2026-11-25T08:00+01:00", "25.11.2026 08:00"),
            f"updated_at must be an ISO 8601 time with its UTC offset, like {EXAMPLE}"
            " (this one is not a valid time)",
        ),
        (GOOD.replace("b ab 1", "HH ZZ 9"), "unknown plate"),
        (GOOD.replace("ber1", "HAM1"), "unknown location"),
        (GOOD.replace("T12:00+01:00", "T06:00+01:00"), "ends_at is not after starts_at"),
        (GOOD.replace("T12:00+01:00", "T07:00+01:00"), "ends_at is not after starts_at"),
    ],
)
def test_each_bad_row_is_rejected_with_its_reason_and_good_rows_still_load(row, reason):
    parsed = _parse(_csv(GOOD, row, GOOD.replace("WO-1", "WO-2")))
    assert parsed.rows["external_id"].to_list() == ["WO-1", "WO-2"]
    assert parsed.rows["line"].to_list() == [2, 4]
    [reject] = parsed.rejects
    assert reject.line == 3
    assert reject.reason.startswith(reason)
    # The raw values are kept as the file had them, for whoever fixes the row.
    assert reject.raw["description"] == "oil service"


def test_the_first_failing_check_is_the_reason():
    # Unknown plate and an impossible window: the plate comes first in the documented order.
    row = GOOD.replace("b ab 1", "XX 1").replace("12:00+01:00", "06:00+01:00")
    [reject] = _parse(_csv(row)).rejects
    assert reject.reason == "unknown plate 'XX 1'"


def test_mixed_ndjson_file_keeps_good_rows_with_their_line_numbers():
    good = {
        "external_id": "WO-1",
        "version": 1,
        "updated_at": "2026-11-25T08:00+01:00",
        "event": "scheduled",
        "plate": "B AB 1",
        "location": "BER1",
        "starts_at": "2026-12-01T07:00+01:00",
        "ends_at": "2026-12-01T12:00+01:00",
    }
    lines = [
        json.dumps(good),
        "",  # a blank line is skipped but counted
        json.dumps(dict(good, external_id="WO-2", version="two")),
        '{"external_id": "WO-3", "version": 1,',  # cut off mid-record
        json.dumps(dict(good, external_id="WO-4", event="cancelled")),
    ]
    parsed = _parse("\n".join(lines).encode(), fmt="ndjson")
    assert parsed.rows.select("line", "external_id").rows() == [(1, "WO-1"), (5, "WO-4")]
    assert [(r.line, r.reason[:28]) for r in parsed.rejects] == [
        (3, "version must be a whole numb"),
        (4, "the line is not valid JSON: "),
    ]
