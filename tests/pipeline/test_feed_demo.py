"""The demo feed writer: realistic files that parse, collide once on purpose, and repeat."""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from sqlalchemy import Connection, text

from db.demo import load_demo
from pipeline.feeds import FEEDS, ParsedFeed, detect
from pipeline.feeds.demo import write_demo_feeds
from tests.conftest import add_vehicle, build_world

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "feeds"
# The deliberately bad row of each feed's file (with bad_rows, the default).
BAD = {
    "contracts": "unknown plate",
    "maintenance": "starts_at must be an ISO 8601 time with its UTC offset",
    "returns": "fuel_percent must be a number from 0 to 100",
    "transfers": "from_location and to_location are the same",
}


def _fleet(conn: Connection) -> tuple[set[str], set[str]]:
    plates = set(conn.execute(text("SELECT plate FROM vehicles")).scalars())
    return plates, set(conn.execute(text("SELECT code FROM locations")).scalars())


def _parse_all(conn: Connection, paths: list[Path]) -> dict[str, ParsedFeed]:
    plates, locations = _fleet(conn)
    parsed = {}
    for path in paths:
        feed, fmt = detect(path.name)
        parsed[feed] = FEEDS[feed].parse(
            path, fmt=fmt, known_plates=plates, known_locations=locations
        )
    return parsed


def _db_now(conn: Connection) -> datetime:
    now = conn.execute(text("SELECT now()")).scalar_one()
    return now.astimezone(UTC).replace(second=0, microsecond=0)


@pytest.fixture
def demo_fleet(conn: Connection) -> Connection:
    load_demo(conn, vehicles=30, locations=2, seed=7)
    return conn


def test_every_row_parses_except_the_one_deliberate_bad_row_per_file(demo_fleet, tmp_path):
    paths = write_demo_feeds(demo_fleet, tmp_path)
    assert [detect(p.name) for p in paths] == [
        ("contracts", "csv"),
        ("maintenance", "csv"),
        ("returns", "csv"),
        ("transfers", "csv"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    parsed = _parse_all(demo_fleet, paths)
    for feed, result in parsed.items():
        [reject] = result.rejects
        assert reject.reason.startswith(BAD[feed]), feed
        # The bad row is the last line of its file.
        assert reject.line == result.rows.height + 2
    contracts = parsed["contracts"].rows
    assert contracts["external_id"].n_unique() == 40
    assert set(contracts["event"]) >= {"created", "extended", "modified", "cancelled"}
    assert contracts.filter(pl.col("event") == "cancelled").height == 1
    # The returns come from the cars that are out right now.
    rented = demo_fleet.execute(
        text("SELECT count(*) FROM vehicle_status_realtime WHERE current_status = 'rented'")
    ).scalar_one()
    assert parsed["returns"].rows.height == min(8, rented) > 0
    assert parsed["transfers"].rows.filter(pl.col("event") == "dispatched").height >= 2


def test_without_bad_rows_nothing_is_rejected_in_either_format(demo_fleet, tmp_path):
    for fmt in ("csv", "ndjson"):
        paths = write_demo_feeds(demo_fleet, tmp_path / fmt, fmt=fmt, bad_rows=False)
        assert all(p.suffix == f".{fmt}" for p in paths)
        for feed, result in _parse_all(demo_fleet, paths).items():
            assert result.rejects == [], feed
            assert result.rows.height > 0, feed


def test_new_periods_collide_with_existing_blocks_exactly_once(demo_fleet, tmp_path):
    conn = demo_fleet
    parsed = _parse_all(conn, write_demo_feeds(conn, tmp_path, contracts=40))
    buffers = dict(
        conn.execute(
            text(
                "SELECT v.plate, c.prep_buffer FROM vehicles v"
                " JOIN vehicle_categories c ON c.id = v.category_id"
            )
        ).all()
    )
    # Every period the batch asks for: a contract's whole reach over its versions (plus the
    # prep buffer), a workshop window, a transfer on the road.
    periods: list[tuple[str, str, datetime, datetime]] = []
    by_contract = (
        parsed["contracts"]
        .rows.group_by("external_id", "plate")
        .agg(pl.col("pickup_at").min(), pl.col("return_at").max())
    )
    for c in by_contract.iter_rows(named=True):
        end = c["return_at"] + buffers[c["plate"]]
        periods.append((c["external_id"], c["plate"], c["pickup_at"], end))
    # A workshop job's versions each book their own window (a rescheduled job frees the
    # first): the span between two windows days apart is not asked for, and may be booked.
    jobs = parsed["maintenance"].rows.unique(["external_id", "plate", "starts_at", "ends_at"])
    periods += [
        (j["external_id"], j["plate"], j["starts_at"], j["ends_at"])
        for j in jobs.iter_rows(named=True)
    ]
    moves = parsed["transfers"].rows.filter(pl.col("external_id").str.starts_with("TX-"))
    periods += [
        (t["external_id"], t["plate"], t["departed_at"], t["eta"])
        for t in moves.iter_rows(named=True)
    ]
    colliding = {
        ref
        for ref, plate, start, end in periods
        if conn.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM blocks b JOIN vehicles v ON v.id = b.vehicle_id"
                " WHERE v.plate = :plate AND b.state IN ('active', 'completed')"
                " AND b.blocked && tstzrange(:start, :end))"
            ),
            {"plate": plate, "start": start, "end": end},
        ).scalar_one()
    }
    assert len(colliding) == 1
    assert next(iter(colliding)).startswith("CT-")
    # Nor do the batch's own periods overlap each other.
    per_plate = defaultdict(list)
    for _, plate, start, end in periods:
        per_plate[plate].append((start, end))
    for spans in per_plate.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_each_feed_tells_a_plausible_story(demo_fleet, tmp_path):
    conn = demo_fleet
    now = _db_now(conn)
    parsed = _parse_all(conn, write_demo_feeds(conn, tmp_path))
    status = {
        plate: (s, loc)
        for plate, s, loc in conn.execute(
            text(
                "SELECT v.plate, s.current_status, l.code FROM vehicles v"
                " JOIN vehicle_status_realtime s ON s.vehicle_id = v.id"
                " LEFT JOIN locations l ON l.id = s.location_id"
            )
        )
    }
    contracts = parsed["contracts"].rows
    assert (contracts["pickup_at"] > now).all()
    jobs = parsed["maintenance"].rows
    started = jobs.filter(pl.col("event") == "started").row(0, named=True)
    assert started["starts_at"] <= now < started["ends_at"]
    assert status[started["plate"]] == ("available", started["location"])
    assert jobs.filter((pl.col("event") == "scheduled") & (pl.col("starts_at") > now)).height
    booked_end = dict(
        conn.execute(
            text(
                "SELECT v.plate, l.code FROM vehicle_status_realtime s"
                " JOIN vehicles v ON v.id = s.vehicle_id JOIN blocks b ON b.id = s.block_id"
                " JOIN locations l ON l.id = b.end_location_id"
                " WHERE s.current_status = 'rented'"
            )
        ).all()
    )
    for r in parsed["returns"].rows.iter_rows(named=True):
        assert booked_end[r["plate"]] == r["location"]
        assert now - timedelta(hours=3) < r["returned_at"] <= now
        assert 0 <= r["fuel_percent"] <= 100 and r["odometer_km"] > 0
    assert parsed["returns"].rows["damage_notes"].drop_nulls().len() == 1
    for t in parsed["transfers"].rows.filter(pl.col("event") == "dispatched").iter_rows(named=True):
        if t["external_id"].startswith("TX-"):
            assert status[t["plate"]] == ("available", t["from_location"])
            assert t["departed_at"] <= now < t["eta"] <= now + timedelta(hours=12)


def test_times_carry_the_offset_of_the_lot_they_happen_at(conn, tmp_path):
    world = build_world(conn)
    for n in range(4):
        add_vehicle(conn, world, f"NY {n}", location=world.nyc)
        add_vehicle(conn, world, f"B T {n}", location=world.ber)
    paths = write_demo_feeds(conn, tmp_path, contracts=12, bad_rows=False)
    contracts = list(csv.DictReader(io.StringIO(paths[0].read_text())))
    assert {r["pickup_location"] for r in contracts} == {"JFK1", "BER1"}
    zones = {"JFK1": ZoneInfo("America/New_York"), "BER1": ZoneInfo("Europe/Berlin")}
    for row in contracts:
        zone = zones[row["pickup_location"]]
        for name in ("updated_at", "pickup_at", "return_at"):
            written = datetime.fromisoformat(row[name])
            assert written.utcoffset() == written.astimezone(zone).utcoffset(), (name, row)
            assert written.tzinfo is not None
    for line in paths[1].read_text().splitlines()[1:]:  # maintenance, all at home lots
        assert ("-05:00" in line or "-04:00" in line) == (",JFK1," in line)


def test_the_same_seed_and_now_give_the_same_files(demo_fleet, tmp_path):
    now = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    first = write_demo_feeds(demo_fleet, tmp_path / "a", now=now, seed=3)
    second = write_demo_feeds(demo_fleet, tmp_path / "b", now=now, seed=3)
    other = write_demo_feeds(demo_fleet, tmp_path / "c", now=now, seed=4)
    assert [p.name for p in first] == [p.name for p in second]
    assert first[0].name == "contracts-2026-11-25T0930.csv"
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert first[0].read_bytes() != other[0].read_bytes()


def test_bad_arguments_are_refused(demo_fleet, tmp_path):
    with pytest.raises(ValueError, match="csv or ndjson"):
        write_demo_feeds(demo_fleet, tmp_path, fmt="xlsx")
    with pytest.raises(ValueError, match="timezone-aware"):
        write_demo_feeds(demo_fleet, tmp_path, now=datetime(2026, 11, 25, 9))
    with pytest.raises(ValueError, match="cannot be negative"):
        write_demo_feeds(demo_fleet, tmp_path, contracts=-1)


# The samples in samples/feeds were written by write_demo_feeds for the fleet `make run`
# loads (seed 7, 200 vehicles, 4 locations) at this moment; docs/feeds.md describes them.
SAMPLE_NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def test_the_sample_files_fit_the_demo_fleet_and_hold_only_the_documented_bad_rows(conn):
    load_demo(conn, vehicles=200, locations=4, seed=7, now=SAMPLE_NOW)
    paths = sorted(SAMPLES.iterdir())
    assert {p.name for p in paths} == {
        f"{feed}-sample.{fmt}" for feed in FEEDS for fmt in ("csv", "ndjson")
    }
    plates, locations = _fleet(conn)
    for path in paths:
        feed, fmt = detect(path.name)
        parsed = FEEDS[feed].parse(
            path, fmt=fmt, known_plates=plates, known_locations=locations, now=SAMPLE_NOW
        )
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        records = len(lines) - (fmt == "csv")
        assert 5 <= records <= 10, path.name
        if fmt == "csv":
            [reject] = parsed.rejects
            assert reject.reason.startswith(BAD[feed]), path.name
        else:
            assert parsed.rejects == [], path.name
            assert all(json.loads(line) for line in lines)
        assert parsed.rows.height + len(parsed.rejects) == records
        if feed == "contracts":
            # The one contract docs/feeds.md names as booked over an existing reservation.
            overlapping = {
                r["external_id"]
                for r in parsed.rows.iter_rows(named=True)
                if conn.execute(
                    text(
                        "SELECT EXISTS (SELECT 1 FROM blocks b JOIN vehicles v"
                        " ON v.id = b.vehicle_id WHERE v.plate = :plate"
                        " AND b.state IN ('active', 'completed')"
                        " AND b.period && tstzrange(:start, :end))"
                    ),
                    {"plate": r["plate"], "start": r["pickup_at"], "end": r["return_at"]},
                ).scalar_one()
            }
            assert overlapping == {"CT-261125-005"}, path.name


def test_cars_on_the_road_arrive_once_their_eta_is_near(demo_fleet, tmp_path):
    conn = demo_fleet
    plate, departed, eta, to_code = conn.execute(
        text(
            "SELECT v.plate, coalesce(b.started_at, lower(b.period)), b.scheduled_end, l.code"
            " FROM vehicle_status_realtime s JOIN vehicles v ON v.id = s.vehicle_id"
            " JOIN blocks b ON b.id = s.block_id JOIN locations l ON l.id = b.end_location_id"
            " WHERE s.current_status = 'in_transit' ORDER BY v.id LIMIT 1"
        )
    ).one()
    now = (eta + timedelta(minutes=90)).astimezone(UTC)
    paths = write_demo_feeds(conn, tmp_path, now=now, bad_rows=False)
    plates, locations = _fleet(conn)
    parsed = FEEDS["transfers"].parse(
        paths[3], fmt="csv", known_plates=plates, known_locations=locations
    )
    assert parsed.rejects == []
    mine = parsed.rows.filter(pl.col("plate") == plate).sort("version")
    assert mine["event"].to_list() == ["dispatched", "arrived"]
    assert mine["external_id"].n_unique() == 1
    arrived = mine.row(1, named=True)
    assert arrived["to_location"] == to_code
    assert departed <= arrived["arrived_at"] <= now
    assert abs(arrived["arrived_at"] - eta) <= timedelta(minutes=30)
