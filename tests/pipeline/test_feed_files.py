"""Whole files as back offices export them: encodings, line ends, NUL bytes, non-feeds."""

from __future__ import annotations

import codecs
import json
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.feeds import FeedFileError, contracts, maintenance, returns
from pipeline.feeds.base import MissingColumns, TimeWindow

PLATES = {"B AB 1", "B AB 2"}
LOCATIONS = {"BER1", "MUC1"}
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HEADER = (
    "external_id,version,updated_at,event,plate,customer_name,customer_phone,customer_email,"
    "pickup_location,return_location,pickup_at,return_at\n"
)
GOOD = (
    "C-1,1,2026-11-25T08:00+01:00,created,b ab 1,Jörg Müller,+49 30 1,a@example.com,"
    "BER1,MUC1,2026-12-01T10:00+01:00,2026-12-03T10:00+01:00\n"
)
RECORD = {
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


def _text(*rows: str) -> str:
    return HEADER + "".join(rows)


def _parse(data: bytes, fmt: str = "csv", **kwargs) -> contracts.ParsedFeed:
    return contracts.parse(
        data, fmt=fmt, known_plates=PLATES, known_locations=LOCATIONS, now=NOW, **kwargs
    )


def _rows(parsed: contracts.ParsedFeed) -> list[tuple]:
    return parsed.rows.select("line", "external_id", "customer_name").rows()


# --- encodings and line ends a back office exports ------------------------------------------


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: s.encode("utf-8"),
        lambda s: codecs.BOM_UTF8 + s.encode("utf-8"),
        lambda s: codecs.BOM_UTF16_LE + s.encode("utf-16-le"),
        lambda s: codecs.BOM_UTF16_BE + s.encode("utf-16-be"),
        lambda s: s.replace("\n", "\r").encode("utf-8"),  # Excel for Mac: CR alone
        lambda s: s.replace("\n", "\r\n").encode("utf-16"),  # Python writes the BOM itself
    ],
    ids=["utf8", "utf8-bom", "utf16le-bom", "utf16be-bom", "cr-only", "utf16-crlf"],
)
def test_the_encodings_and_line_ends_back_offices_export_all_load_the_same(encode):
    data = encode(_text(GOOD, GOOD.replace("C-1", "C-2")))
    parsed = _parse(data)
    assert parsed.rejects == []
    assert _rows(parsed) == [(2, "C-1", "Jörg Müller"), (3, "C-2", "Jörg Müller")]


def test_ndjson_in_utf16_with_its_bom_loads():
    data = codecs.BOM_UTF16_LE + (json.dumps(RECORD, ensure_ascii=False) + "\n").encode("utf-16-le")
    assert _parse(data, fmt="ndjson").rows["external_id"].to_list() == ["C-9"]


def test_utf16_without_a_byte_order_mark_is_refused_as_a_whole_saying_so():
    with pytest.raises(
        FeedFileError, match=r"UTF-16 .*without a byte-order mark: save it as UTF-8"
    ):
        _parse(_text(GOOD).encode("utf-16-le"))


# --- NUL bytes: PostgreSQL cannot store them, so their rows are set aside --------------------


def test_a_nul_byte_in_a_row_rejects_that_row_naming_the_field_and_the_rest_load():
    nul = GOOD.replace("C-1", "C-2").replace("Jörg Müller", "Jörg\x00Müller")
    bad_and_nul = GOOD.replace("C-1", "C-3").replace("b ab 1", "X\x00")  # also an unknown plate
    parsed = _parse(_text(GOOD, nul, bad_and_nul, GOOD.replace("C-1", "C-4")).encode())
    assert [r[1] for r in _rows(parsed)] == ["C-1", "C-4"]
    assert [(r.line, r.reason) for r in parsed.rejects] == [
        (3, "customer_name contains a NUL character (byte 0), which cannot be stored:"
            " remove it from the export"),
        (4, "plate contains a NUL character (byte 0), which cannot be stored:"
            " remove it from the export"),
    ]  # fmt: skip
    assert parsed.rejects[0].raw["external_id"] == "C-2"


def test_an_ndjson_nul_escape_rejects_its_line_only():
    lines = [json.dumps(RECORD), json.dumps(dict(RECORD, external_id="C-10", customer_name="a\0b"))]
    assert "\\u0000" in lines[1]
    parsed = _parse("\n".join(lines).encode(), fmt="ndjson")
    assert parsed.rows["external_id"].to_list() == ["C-9"]
    [reject] = parsed.rejects
    assert (reject.line, reject.reason.split(",")[0]) == (
        2,
        "customer_name contains a NUL character (byte 0)",
    )


# --- files that cannot be read at all: one reason for the whole file -------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_text(GOOD).replace(",", ";").encode(), "the file is separated by ';', not by commas"),
        (_text(GOOD).replace(",", "\t").encode(), "the file is separated by tabs, not by commas"),
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 4, "the file is a ZIP archive"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500), "the file is an Excel .xls workbook"),
        (bytes(range(256)) * 8, "the file is binary, not text"),
        (
            "Jörg;Müller\n".encode("cp1252") + GOOD.encode(),
            "the header line is not UTF-8 text",
        ),
    ],
    ids=["semicolon", "tab", "xlsx", "xls", "binary", "latin1-header"],
)
def test_a_file_that_is_no_csv_is_refused_with_one_reason_saying_what_to_do(data, reason):
    with pytest.raises(FeedFileError) as caught:
        _parse(data)
    assert str(caught.value).startswith(reason)
    assert "export" in str(caught.value) or "save" in str(caught.value)


def test_a_header_without_the_feeds_columns_refuses_the_file_naming_them():
    header = "external_id,returned_at,plate,location,odometer_km\n"
    with pytest.raises(MissingColumns) as caught:
        _parse(f"{header}R-1,2026-11-25T12:00Z,B AB 1,BER1,100\n".encode())
    assert caught.value.columns == (
        "external_id",
        "returned_at",
        "plate",
        "location",
        "odometer_km",
    )
    assert str(caught.value).startswith(
        "the header has no version, updated_at, event, customer_name, pickup_location,"
        " return_location, pickup_at, return_at column"
    )


def test_lines_after_the_header_without_any_value_are_no_rows_and_the_file_says_so():
    parsed = _parse((HEADER + ",,,,,,,,,,,\n ,,\n").encode())
    assert (parsed.rows.height, parsed.rejects) == (0, [])
    assert parsed.note == "the lines after the header hold no values: there is nothing to load"


@pytest.mark.parametrize(
    ("data", "fmt", "note"),
    [
        (b"", "csv", "the file is empty"),
        (b"\n \n", "ndjson", "the file is empty"),
        (HEADER.encode(), "csv", "the file has a header but no rows"),
    ],
)
def test_an_empty_file_says_so(data, fmt, note):
    assert _parse(data, fmt=fmt).note == note


# --- times the engine can hold: a plausible window around now --------------------------------


def test_times_outside_the_plausible_window_are_rejected_naming_the_value():
    far = GOOD.replace("C-1", "C-2").replace("2026-12-03T10:00+01:00", "9999-12-31T00:00+00:00")
    old = GOOD.replace("C-1", "C-3").replace("2026-11-25T08:00+01:00", "1900-01-01T00:00Z")
    parsed = _parse(_text(GOOD, far, old).encode())
    assert parsed.rows["external_id"].to_list() == ["C-1"]
    assert [(r.line, r.reason) for r in parsed.rejects] == [
        (3, "return_at 9999-12-31T00:00+00:00 is more than 730 days after now: check the year"),
        (4, "updated_at 1900-01-01T00:00Z is more than 730 days before now: check the year"),
    ]


def test_the_window_is_configurable_and_applies_to_every_feed():
    window = TimeWindow(back=timedelta(days=10), ahead=timedelta(days=3))
    parsed = _parse(_text(GOOD).encode(), window=window)
    assert [r.reason for r in parsed.rejects] == [
        "pickup_at 2026-12-01T10:00+01:00 is more than 3 days after now: check the year"
    ]
    header = "external_id,version,updated_at,event,plate,location,starts_at,ends_at\n"
    job = "W-1,1,2026-11-01T08:00Z,scheduled,B AB 1,BER1,2026-11-26T08:00Z,2026-11-26T12:00Z\n"
    [reject] = maintenance.parse(
        (header + job).encode(),
        fmt="csv",
        known_plates=PLATES,
        known_locations=LOCATIONS,
        now=NOW,
        window=window,
    ).rejects
    assert reject.reason.startswith("updated_at 2026-11-01T08:00Z is more than 10 days before")
    back = "external_id,returned_at,plate,location\nR-1,2020-01-01T10:00Z,B AB 1,BER1\n"
    [reject] = returns.parse(
        back.encode(), fmt="csv", known_plates=PLATES, known_locations=LOCATIONS, now=NOW
    ).rejects
    assert reject.reason.startswith("returned_at 2020-01-01T10:00Z is more than 730 days before")


# --- reasons a clerk can act on ----------------------------------------------------------------


def _plates(*plates: str, rows: list[str]) -> contracts.ParsedFeed:
    data = _text(*(GOOD.replace("C-1", f"C-{i}").replace("b ab 1", p) for i, p in enumerate(rows)))
    return contracts.parse(
        data.encode(), fmt="csv", known_plates=set(plates), known_locations=LOCATIONS, now=NOW
    )


def test_an_unknown_plate_is_named_with_the_look_alike_vehicle_meant():
    parsed = _plates("B HL 6904", "B AB 1", rows=["B HL 69O4", "b hl 69o4", "HH ZZ 9"])
    assert [r.reason for r in parsed.rejects] == [
        "unknown plate 'B HL 69O4'; did you mean 'B HL 6904'?",
        "unknown plate 'B HL 69O4'; did you mean 'B HL 6904'?",
        "unknown plate 'HH ZZ 9'",
    ]


def test_a_plate_without_spaces_or_with_hyphens_is_the_one_vehicle_it_folds_to():
    parsed = _plates("B AB 1", "M XY 23", rows=["BAB1", "b-ab-1", " b  ab 1 ", "MXY-23"])
    assert parsed.rejects == []
    assert parsed.rows["plate"].to_list() == ["B AB 1", "B AB 1", "B AB 1", "M XY 23"]


def test_a_plate_that_folds_to_two_vehicles_is_rejected_naming_both():
    parsed = _plates("B AB 12", "BA B12", rows=["BAB12", "BA B12"])
    assert parsed.rows["plate"].to_list() == ["BA B12"]
    [reject] = parsed.rejects
    assert reject.reason == (
        "plate 'BAB12' could be 'B AB 12' or 'BA B12': write it with the fleet's spaces"
    )


@pytest.mark.parametrize(
    ("field", "limit"),
    [("customer_name", 200), ("customer_phone", 50), ("customer_email", 254)],
)
def test_a_value_past_its_documented_length_is_rejected_and_one_at_it_loads(field, limit):
    at = dict(RECORD, external_id="C-1", **{field: "x" * limit})
    past = dict(RECORD, external_id="C-2", **{field: "x" * (limit + 1)})
    huge = dict(RECORD, external_id="C-3", **{field: "x" * 1_000_000})
    data = "\n".join(json.dumps(r) for r in (at, past, huge)).encode()
    parsed = _parse(data, fmt="ndjson")
    assert parsed.rows["external_id"].to_list() == ["C-1"]
    assert [r.reason for r in parsed.rejects] == [
        f"{field} is longer than {limit} characters (it has {limit + 1}): shorten it",
        f"{field} is longer than {limit} characters (it has 1000000): shorten it",
    ]


def test_damage_notes_are_kept_whole_up_to_their_longer_limit():
    back = "external_id,returned_at,plate,location,damage_notes\n"
    whole = "-".join(["scratch on the rear bumper"] * 148)  # 3,995 characters: a thorough check
    rows = [f"R-{i},2026-11-25T10:00Z,B AB 1,BER1,{notes}\n" for i, notes in enumerate(
        [whole, whole + "-dents"]
    )]  # fmt: skip
    parsed = returns.parse(
        (back + "".join(rows)).encode(),
        fmt="csv",
        known_plates=PLATES,
        known_locations=LOCATIONS,
        now=NOW,
    )
    assert parsed.rows["damage_notes"].to_list() == [whole]
    assert [r.reason for r in parsed.rejects] == [
        "damage_notes is longer than 4,000 characters (it has 4001): shorten it"
    ]
