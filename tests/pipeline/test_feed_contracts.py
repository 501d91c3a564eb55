"""Contract feed parsing: typed rows, and each bad row rejected with a reason to act on."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.feeds import FEEDS, FeedFileError, contracts, detect

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
    assert [(r.line, r.reason) for r in parsed.rejects] == [(2, "unknown plate 'NOPE'")]


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="csv or ndjson"):
        contracts.parse(b"", fmt="xml", known_plates=PLATES, known_locations=LOCATIONS)


# --- what every feed shares (pipeline/feeds/base.py), shown on the contract feed ------------


def _parse(data: bytes, fmt: str = "csv") -> contracts.ParsedFeed:
    return contracts.parse(data, fmt=fmt, known_plates=PLATES, known_locations=LOCATIONS)


def test_a_naive_time_first_in_the_file_does_not_change_how_the_others_are_read():
    # A format guessed from the first value would read it as UTC and reject the rest.
    naive = GOOD.replace("C-1,", "C-0,").replace("2026-12-01T10:00+01:00", "2026-12-01T10:00")
    parsed = _parse(_csv(naive, GOOD))
    assert parsed.rows["external_id"].to_list() == ["C-1"]
    [reject] = parsed.rejects
    assert reject.reason.endswith("(this one has no offset)")


@pytest.mark.parametrize(
    "written",
    [
        "2026-12-01T10:00+01:00",
        "2026-12-01T10:00:00+01:00",
        "2026-12-01T10:00:00.000+0100",
        "2026-12-01T10:00+01",
        "2026-12-01T09:00Z",
        "2026-12-01T09:00:00Z",
        "2026-12-01 10:00+01:00",
        "2026-12-01T04:00-05:00",
    ],
)
def test_offsets_may_be_written_in_the_usual_iso_forms_mixed_in_one_column(written):
    row = GOOD.replace("C-1,", "C-2,").replace("2026-12-01T10:00+01:00", written)
    parsed = _parse(_csv(GOOD, row))
    assert parsed.rejects == []
    assert (
        parsed.rows["pickup_at"].dt.to_string("%Y-%m-%dT%H:%M%z").to_list()
        == ["2026-12-01T09:00+0000"] * 2
    )


@pytest.mark.parametrize(
    "written", ["2026-12-1T10:00+01:00", "2026-12-01T9:00+01:00", "2026-02-30T10:00+01:00",
                "2026-12-01T10:00+01:00 CET", "tomorrow", "1764579600"],
)  # fmt: skip
def test_what_is_not_an_iso_time_is_rejected_as_such(written):
    row = GOOD.replace("2026-12-01T10:00+01:00", written)
    [reject] = _parse(_csv(row)).rejects
    assert reject.reason.startswith("pickup_at must be an ISO 8601 time")
    assert reject.reason.endswith("(this one is not a valid time)")


def test_csv_line_numbers_count_blank_lines_and_values_spanning_lines():
    multi = GOOD.replace("Alice Schmidt", '"Alice\nSchmidt"').replace("C-1", "C-2")
    data = _csv("\n", GOOD, "  \n", multi, GOOD.replace("C-1", "C-3").replace("b ab 1", "X"))
    parsed = _parse(data + b"\n\n")
    assert parsed.rows.select("line", "external_id").rows() == [(3, "C-1"), (5, "C-2")]
    assert parsed.rows["customer_name"].to_list() == ["Alice Schmidt", "Alice\nSchmidt"]
    assert [(r.line, r.reason) for r in parsed.rejects] == [(7, "unknown plate 'X'")]


def test_csv_header_may_differ_in_case_spacing_bom_and_line_endings():
    header = HEADER.upper().replace(",PLATE,", ", Plate ,")
    data = ("\ufeff" + header + GOOD).replace("\n", "\r\n").encode()
    parsed = _parse(data)
    assert parsed.rejects == []
    assert parsed.rows.row(0, named=True)["customer_email"] == "a@example.com"


def test_a_csv_row_with_too_many_values_is_rejected_and_the_rest_still_loads():
    extra = GOOD.replace("Alice Schmidt", "Schmidt, Alice").replace("C-1", "C-2")
    parsed = _parse(_csv(GOOD, "\n", extra, GOOD.replace("C-1", "C-3")))
    assert parsed.rows.select("line", "external_id").rows() == [(2, "C-1"), (5, "C-3")]
    [reject] = parsed.rejects
    assert reject.line == 4
    assert reject.reason.startswith("the line has 13 values but the header names 12 columns")
    assert "Schmidt" in reject.raw["values"]


def test_a_missing_header_column_refuses_the_file_naming_the_column():
    # Every row would lack it: one reason for the file, not the same one on each row.
    header = HEADER.replace("plate,", "")
    row = GOOD.replace("b ab 1,", "")
    with pytest.raises(FeedFileError, match=r"^the header has no plate column "):
        _parse((header + row).encode())


@pytest.mark.parametrize("twice", ["Plate", "plate", " plate "])
def test_a_header_naming_a_column_twice_makes_the_file_unreadable(twice):
    # Spelt the same way, too: the CSV reader would keep one and rename the other aside.
    row = GOOD.replace("created,", "created,B AB 9,")
    with pytest.raises(FeedFileError, match="names plate more than once"):
        _parse((HEADER.replace("event,", f"event,{twice},") + row).encode())


def test_a_line_that_is_not_utf8_is_rejected_alone():
    latin1 = GOOD.replace("Alice Schmidt", "Jörg Müller").replace("C-1", "C-2").encode("latin-1")
    parsed = _parse(_csv(GOOD) + latin1 + GOOD.replace("C-1", "C-3").encode())
    assert parsed.rows["external_id"].to_list() == ["C-1", "C-3"]
    assert [(r.line, r.reason) for r in parsed.rejects] == [
        (3, "the line is not UTF-8 text: save the file as UTF-8")
    ]
    record = json.dumps({"external_id": "C-2", "customer_name": "Jörg"}, ensure_ascii=False)
    data = b"\n".join([b'{"external_id": "C-1"}', record.encode("latin-1")])
    reasons = [(r.line, r.reason) for r in _parse(data, fmt="ndjson").rejects]
    assert reasons == [
        (1, "version is missing"),
        (2, "the line is not UTF-8 text: save the file as UTF-8"),
    ]


def test_ndjson_lines_that_are_not_json_objects_are_rejected_with_their_line():
    record = {
        "external_id": "C-9",
        "version": 1,
        "updated_at": "2026-11-25T08:00:00Z",
        "event": "created",
        "plate": "B AB 2",
        "customer_name": {"first": "Bob"},  # not text, but kept as its JSON
        "pickup_location": "MUC1",
        "return_location": "MUC1",
        "pickup_at": "2026-12-01T10:00:00+01:00",
        "return_at": "2026-12-02T10:00:00+01:00",
    }
    lines = [json.dumps(record), "[1, 2]", "   ", "not json", json.dumps(record)]
    parsed = _parse("\n".join(lines).encode(), fmt="ndjson")
    assert parsed.rows["line"].to_list() == [1, 5]
    assert parsed.rows["customer_name"].to_list() == ['{"first": "Bob"}'] * 2
    assert [(r.line, r.reason.split(":")[0]) for r in parsed.rejects] == [
        (2, "the line is not a JSON object"),
        (4, "the line is not valid JSON"),
    ]
    assert parsed.rejects[1].raw == {"text": "not json"}


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (b"", "csv"),
        (b"\n\n", "csv"),
        (HEADER.encode(), "csv"),
        (b"", "ndjson"),
        (b"\n \n", "ndjson"),
    ],
)
def test_an_empty_file_gives_no_rows_with_the_usual_columns(data, fmt):
    parsed = _parse(data, fmt=fmt)
    assert parsed.rejects == []
    assert parsed.rows.height == 0
    assert parsed.rows.schema == _parse(_csv(GOOD)).rows.schema


def test_optional_text_left_empty_is_null_and_plates_are_written_as_the_fleet_does():
    row = GOOD.replace("+49 30 1,a@example.com", " , ").replace("b ab 1", "  b   ab 1 ")
    row = row.replace("BER1,MUC1", "ber1 , muc1").replace("created", "Created")
    parsed = _parse(_csv(row))
    assert parsed.rejects == []
    got = parsed.rows.select(
        "plate", "event", "pickup_location", "return_location", "customer_phone", "customer_email"
    )
    assert got.rows() == [("B AB 1", "created", "BER1", "MUC1", None, None)]


def test_an_external_id_longer_than_the_tables_take_is_rejected():
    row = GOOD.replace("C-1,", "C" * 101 + ",")
    [reject] = _parse(_csv(row)).rejects
    assert reject.reason == "external_id is longer than 100 characters (it has 101): shorten it"


def test_now_is_accepted_but_must_carry_its_zone():
    assert _parse(_csv(GOOD)).rows.height == 1
    kwargs = {"fmt": "csv", "known_plates": PLATES, "known_locations": LOCATIONS}
    assert contracts.parse(_csv(GOOD), now=datetime.now(UTC), **kwargs).rows.height == 1
    with pytest.raises(ValueError, match="timezone-aware"):
        contracts.parse(_csv(GOOD), now=datetime(2026, 11, 25), **kwargs)


# --- the registry ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("contracts-2026-11-25T0800.csv", ("contracts", "csv")),
        ("maintenance_batch7.ndjson", ("maintenance", "ndjson")),
        ("returns.jsonl", ("returns", "ndjson")),
        ("Transfers-North.CSV", ("transfers", "csv")),
        ("s3://fleet/inbox/contracts_1.ndjson", ("contracts", "ndjson")),
        (str(Path("inbox") / "returns-7.csv"), ("returns", "csv")),
    ],
)
def test_detect_reads_feed_and_format_from_the_name(name, expected):
    assert detect(name) == expected


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("contract-1.csv", "cannot tell the feed"),
        ("contractsX.csv", "cannot tell the feed"),
        (".contracts-1.csv.part", "cannot tell the feed"),
        ("README.md", "cannot tell the feed"),
        ("contracts-1.xlsx", "cannot tell the format"),
        ("contracts-1.csv.gz", "cannot tell the format"),
        ("contracts", "cannot tell the format"),
    ],
)
def test_detect_refuses_other_names_with_what_to_fix(name, problem):
    with pytest.raises(ValueError, match=problem):
        detect(name)


@pytest.mark.parametrize("feed", sorted(FEEDS))
def test_every_registered_feed_parses_with_the_same_call(feed):
    parsed = FEEDS[feed].parse(
        b"", fmt="csv", known_plates=PLATES, known_locations=LOCATIONS, now=datetime.now(UTC)
    )
    assert parsed.rows.columns[0] == "line" and parsed.rejects == []


@pytest.mark.slow
def test_a_million_contract_rows_parse_in_a_few_seconds():
    rows = [
        f"C-{i},{i % 5 + 1},2026-11-25T08:00+01:00,created,B AB {i % 2 + 1},Alice,,,BER1,MUC1,"
        f"2026-12-01T10:00+01:00,2026-12-0{i % 3 + 2}T10:00:00Z\n"
        for i in range(1_000_000)
    ]
    rows[123_456] = rows[123_456].replace("BER1", "XXX1")
    data = _csv(*rows)
    started = time.perf_counter()
    parsed = _parse(data)
    elapsed = time.perf_counter() - started
    assert parsed.rows.height == 999_999
    assert [(r.line, r.reason) for r in parsed.rejects] == [(123_458, "unknown pickup_location")]
    assert elapsed < 10, f"took {elapsed:.1f}s"


def test_an_ndjson_file_without_a_single_json_object_is_unreadable_as_a_whole():
    with pytest.raises(FeedFileError, match="not an NDJSON file: no line is a JSON object"):
        _parse(HEADER.encode() + GOOD.encode(), fmt="ndjson")
