"""Contract feed parsing: typed rows, and each bad row rejected with a reason to act on."""

from __future__ import annotations

import json

import pytest

from pipeline.feeds import contracts

PLATES = {"B AB 1", "B AB 2"}
LOCATIONS = {"BER1", "MUC1"}
HEADER = (
    "external_id,version,updated_at,event,plate,customer_name,customer_phone,customer_email,"
    "pickup_location,return_location,pickup_at,return_at\n"
)
GOOD = (
    "C-1,1,2026-11-25T08:00+01:00,created,b ab 1,Alice Schmidt,+49 30 1,a@example.com,"
    "BER1,MUC1,2026-12-01T10:00+01:00,2026-12-03T10:00+01:00\n"
)


def _csv(*rows: str) -> bytes:
    return (HEADER + "".join(rows)).encode()


def test_good_rows_are_typed_with_times_in_utc():
    parsed = contracts.parse(_csv(GOOD), fmt="csv", known_plates=PLATES, known_locations=LOCATIONS)
    assert parsed.rejects == []
    row = parsed.rows.row(0, named=True)
    assert (row["line"], row["version"], row["plate"]) == (2, 1, "B AB 1")
    assert row["pickup_at"].isoformat() == "2026-12-01T09:00:00+00:00"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (GOOD.replace("C-1,1,", ",1,"), "external_id is missing"),
        (GOOD.replace("C-1,1,", "C-1,zero,"), "version must be a whole number"),
        (GOOD.replace("created", "borrowed"), "event must be one of"),
        (
            GOOD.replace("2026-12-01T10:00+01:00", "2026-12-01T10:00"),
            "pickup_at must be an ISO 8601",
        ),
        (GOOD.replace("b ab 1", "B ZZ 9"), "unknown plate"),
        (GOOD.replace("BER1,MUC1", "XXX1,MUC1"), "unknown pickup_location"),
        (
            GOOD.replace("2026-12-03T10:00+01:00", "2026-11-30T10:00+01:00"),
            "return_at is not after",
        ),
    ],
)
def test_bad_rows_are_rejected_with_a_reason_and_good_rows_still_load(row, reason):
    parsed = contracts.parse(
        _csv(GOOD, row, GOOD.replace("C-1", "C-2")),
        fmt="csv",
        known_plates=PLATES,
        known_locations=LOCATIONS,
    )
    assert parsed.rows["external_id"].to_list() == ["C-1", "C-2"]
    [reject] = parsed.rejects
    assert reject.line == 3 and reason in reject.reason
    assert reject.raw["event"] in ("created", "borrowed")


def test_ndjson_is_read_the_same_way_with_line_numbers():
    record = {
        "external_id": "C-9",
        "version": 2,
        "updated_at": "2026-11-25T08:00:00Z",
        "event": "modified",
        "plate": "B AB 2",
        "customer_name": "Bob",
        "pickup_location": "MUC1",
        "return_location": "MUC1",
        "pickup_at": "2026-12-01T10:00:00+01:00",
        "return_at": "2026-12-02T10:00:00+01:00",
    }
    bad = dict(record, plate="NOPE")
    data = "\n".join(json.dumps(r) for r in (record, bad)).encode()
    parsed = contracts.parse(data, fmt="ndjson", known_plates=PLATES, known_locations=LOCATIONS)
    assert parsed.rows["version"].to_list() == [2]
    assert [(r.line, r.reason) for r in parsed.rejects] == [(2, "unknown plate")]


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="csv or ndjson"):
        contracts.parse(b"", fmt="xml", known_plates=PLATES, known_locations=LOCATIONS)
