"""Every reason a feed can give is listed in docs/feeds.md, so a clerk can look it up."""

from __future__ import annotations

import codecs
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from db import feeds
from pipeline.feeds import FEEDS, FeedFileError
from pipeline.ingest import ingest_file
from tests.conftest import add_vehicle, build_world
from tests.db.factories import rental_under_way

DOC = Path(__file__).resolve().parents[2] / "docs" / "feeds.md"
PLATES = {"B AB 1", "B HL 6904", "B AB 12", "BA B12"}
LOCATIONS = {"BER1", "MUC1"}
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HEADERS = {
    "contracts": "external_id,version,updated_at,event,plate,customer_name,customer_phone,"
    "customer_email,pickup_location,return_location,pickup_at,return_at",
    "maintenance": "external_id,version,updated_at,event,plate,location,starts_at,ends_at,"
    "description",
    "returns": "external_id,version,returned_at,plate,location,contract_id,odometer_km,"
    "fuel_percent,damage_notes",
    "transfers": "external_id,version,updated_at,event,plate,from_location,to_location,"
    "departed_at,eta,arrived_at",
}
GOOD = {
    "contracts": "C-1,1,2026-11-25T08:00Z,created,B AB 1,Ann,,,BER1,MUC1,2026-12-01T10:00Z,"
    "2026-12-03T10:00Z",
    "maintenance": "W-1,1,2026-11-25T08:00Z,scheduled,B AB 1,BER1,2026-11-26T08:00Z,"
    "2026-11-26T12:00Z,oil",
    "returns": "R-1,1,2026-11-25T10:00Z,B AB 1,BER1,C-1,100,50,",
    "transfers": "T-1,1,2026-11-25T08:00Z,dispatched,B AB 1,BER1,MUC1,2026-11-25T08:00Z,"
    "2026-11-25T15:00Z,",
}
# (feed, text replaced in the good row, replacement): one bad row per check there is.
BAD_ROWS = [
    ("contracts", "C-1,", ","),
    ("contracts", "C-1,", "C" * 101 + ","),
    ("contracts", ",1,", ",zero,"),
    ("contracts", "created", "borrowed"),
    ("contracts", "2026-12-01T10:00Z", "2026-12-01T10:00"),
    ("contracts", "2026-12-01T10:00Z", "tomorrow"),
    ("contracts", "2026-12-03T10:00Z", "9999-12-31T10:00Z"),
    ("contracts", "2026-11-25T08:00Z", "1900-01-01T10:00Z"),
    ("contracts", "B AB 1", "B HL 69O4"),
    ("contracts", "B AB 1", "HH ZZ 9"),
    ("contracts", "B AB 1", "BAB12"),
    ("contracts", "BER1", "HAM1"),
    ("contracts", "2026-12-03T10:00Z", "2026-11-30T10:00Z"),
    ("contracts", "2026-12-03T10:00Z", "2028-01-10T10:00Z"),  # longer than the engine holds
    ("contracts", "Ann", "Ann\x00"),
    ("contracts", "Ann", "A" * 201),
    ("contracts", "Ann", "Ann,Bob"),
    ("maintenance", "2026-11-26T12:00Z", "2026-11-26T07:00Z"),
    ("returns", ",100,", ",-5,"),
    ("returns", ",50,", ",120,"),
    ("returns", "2026-11-25T10:00Z", "2026-11-26T10:00Z"),
    ("transfers", "BER1,MUC1", "BER1,BER1"),
    ("transfers", ",2026-11-25T15:00Z,", ",,"),
    ("transfers", "2026-11-25T15:00Z", "2026-11-25T07:00Z"),
    ("transfers", "dispatched", "arrived"),
]
BAD_FILES = [
    ("contracts", "csv", b"PK\x03\x04" + bytes(range(256))),
    ("contracts", "csv", bytes(range(256)) * 8),
    ("contracts", "csv", codecs.BOM_UTF32_LE + "a,b\n".encode("utf-32-le")),
    ("contracts", "csv", (HEADERS["contracts"] + "\n").encode("utf-16-le") * 3),
    (
        "contracts",
        "csv",
        (HEADERS["contracts"] + "\n" + GOOD["contracts"]).replace(",", ";").encode(),
    ),
    ("contracts", "csv", "Jörg\n".encode("cp1252")),
    ("contracts", "csv", b"external_id,plate\nC-1,B AB 1\n"),
    ("contracts", "csv", b"plate,plate\nB AB 1,B AB 1\n"),
    ("contracts", "ndjson", b"{not json\nnor this\n"),
]


def documented() -> list[re.Pattern[str]]:
    """The reasons docs/feeds.md lists, as patterns (`…` stands for any value)."""
    section = DOC.read_text().split("## Every reason", 1)[1].split("\n## ", 1)[0]
    spans = re.findall(r"^- `([^`]+)`", section, flags=re.MULTILINE)
    return [re.compile(re.escape(s).replace("…", ".+?")) for s in spans]


def _undocumented(reasons: list[str]) -> list[str]:
    patterns = documented()
    return [r for r in reasons if not any(p.fullmatch(r) for p in patterns)]


def _bad_row_reasons() -> list[str]:
    reasons = []
    for feed, old, new in BAD_ROWS:
        assert old in GOOD[feed], (feed, old)
        data = f"{HEADERS[feed]}\n{GOOD[feed].replace(old, new, 1)}\n".encode()
        parsed = FEEDS[feed].parse(
            data, fmt="csv", known_plates=PLATES, known_locations=LOCATIONS, now=NOW
        )
        assert parsed.rejects, (feed, old, new)
        reasons += [r.reason for r in parsed.rejects]
    for line in ('{"external_id": "C-1"', "[1, 2]"):
        data = (json.dumps({"external_id": "C-1"}) + "\n" + line + "\n").encode()
        parsed = FEEDS["contracts"].parse(
            data, fmt="ndjson", known_plates=PLATES, known_locations=LOCATIONS, now=NOW
        )
        reasons += [r.reason for r in parsed.rejects]
    return reasons


def test_every_reason_a_bad_row_gets_is_listed_in_the_docs():
    reasons = _bad_row_reasons()
    assert len(set(reasons)) >= len(BAD_ROWS)
    assert _undocumented(reasons) == []


@pytest.mark.parametrize(("feed", "fmt", "data"), BAD_FILES)
def test_every_reason_a_whole_file_gets_is_listed_in_the_docs(feed, fmt, data):
    with pytest.raises(FeedFileError) as caught:
        FEEDS[feed].parse(data, fmt=fmt, known_plates=PLATES, known_locations=LOCATIONS, now=NOW)
    assert _undocumented([str(caught.value)]) == []


def test_the_reasons_the_engine_gives_when_a_row_is_applied_are_listed_too(committed):
    with committed.begin() as c:
        world = build_world(c)
        cars = [add_vehicle(c, world, f"B RD {i}") for i in range(1, 3)]
        rental_under_way(c, world, cars[1], start=world.at(-5), end=world.at(3), reference="K-1")
    now = datetime.now(UTC).replace(second=0, microsecond=0)

    def iso(t: datetime) -> str:
        return t.isoformat(timespec="minutes")

    back = iso(now - timedelta(hours=1))
    returns = ingest_file(
        committed,
        name="returns-1.csv",
        data=(
            "external_id,returned_at,plate,location,contract_id\n"
            f"R-1,{back},{cars[0].plate},BER1,\n"
            f"R-3,{iso(now - timedelta(hours=9))},{cars[1].plate},BER1,\n"
        ).encode(),
    )
    with committed.connect() as c:
        reasons = [
            r.reason for result in (returns,) for r in feeds.list_rejects(c, file_id=result.file_id)
        ]
    assert len(reasons) == 2
    assert _undocumented(reasons) == []
