"""Contract feed loading: exactly-once files, newest version wins, effects through the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from db import feeds
from pipeline.ingest import ingest_file
from tests.conftest import add_vehicle, build_world

HEADER = (
    "external_id,version,updated_at,event,plate,customer_name,customer_phone,customer_email,"
    "pickup_location,return_location,pickup_at,return_at\n"
)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="minutes")


def _row(eid, version, event, plate, start, end, *, who="Alice Schmidt", updated=None) -> str:
    updated = updated or datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=version)
    return (
        f"{eid},{version},{_iso(updated)},{event},{plate},{who},+49 30 1,"
        f"{who.split()[0].lower()}@example.com,BER1,BER1,{_iso(start)},{_iso(end)}\n"
    )


def _csv(*rows: str) -> bytes:
    return (HEADER + "".join(rows)).encode()


@pytest.fixture
def fleet_world(committed):
    with committed.begin() as conn:
        world = build_world(conn)
        cars = [add_vehicle(conn, world, f"B FD {i}") for i in range(1, 6)]
    # Whole hours ahead, so periods are easy to read.
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    return committed, world, cars, base


def _blocks(engine, reference):
    with engine.connect() as c:
        return c.execute(
            text(
                "SELECT b.id, b.kind, b.state, lower(b.period) AS start, upper(b.period) AS end,"
                " u.username FROM blocks b JOIN users u ON u.id = b.created_by"
                " WHERE b.reference = :r ORDER BY b.id"
            ),
            {"r": reference},
        ).all()


def test_the_same_file_twice_is_a_no_op(fleet_world):
    engine, _, cars, base = fleet_world
    data = _csv(_row("C-1", 1, "created", cars[0].plate, base, base + timedelta(days=1)))
    first = ingest_file(engine, name="contracts-1.csv", data=data)
    second = ingest_file(engine, name="contracts-1-again.csv", data=data)
    assert (first.status, first.applied) == ("loaded", 1)
    assert second.status == "duplicate"
    rows = _blocks(engine, "C-1")
    assert len(rows) == 1
    assert (rows[0].kind, rows[0].state, rows[0].username) == (
        "reservation",
        "active",
        "feed-contracts",
    )
    with engine.connect() as c:
        assert len(feeds.list_files(c, feed="contracts")) == 1


def test_bad_rows_are_quarantined_and_good_rows_of_the_file_still_load(fleet_world):
    engine, _, cars, base = fleet_world
    rows = []
    for i in range(20):
        car = cars[i % 5]
        start = base + timedelta(days=3 * (i // 5))
        rows.append(_row(f"C-{i}", 1, "created", car.plate, start, start + timedelta(days=1)))
    rows[3] = rows[3].replace(cars[3].plate, "XX 999")  # unknown plate
    rows[11] = rows[11].replace(",created,", ",borrowed,")  # unknown event
    result = ingest_file(engine, name="contracts-mixed.csv", data=_csv(*rows))
    assert (result.rows, result.applied, result.rejected) == (20, 18, 2)
    with engine.connect() as c:
        rejects = feeds.list_rejects(c, file_id=result.file_id)
        loaded = c.execute(text("SELECT count(*) FROM contracts")).scalar_one()
        files = feeds.list_files(c)
    assert [(r.line, r.reason) for r in rejects] == [
        (5, "unknown plate 'XX 999'"),
        (13, "event must be one of created, modified, extended, closed, cancelled"),
    ]
    assert rejects[0].raw["plate"] == "XX 999"
    assert loaded == 18
    assert (files[0].rows_total, files[0].rows_applied, files[0].rows_rejected) == (20, 18, 2)


def test_an_older_version_arriving_late_never_rolls_the_contract_back(fleet_world):
    engine, _, cars, base = fleet_world
    plate = cars[0].plate
    v1 = _row("C-7", 1, "created", plate, base, base + timedelta(days=1))
    v2 = _row("C-7", 2, "extended", plate, base, base + timedelta(days=3))
    ingest_file(engine, name="contracts-b.csv", data=_csv(v2))
    late = ingest_file(engine, name="contracts-a.csv", data=_csv(v1))
    assert (late.applied, late.stale) == (0, 1)
    [block] = _blocks(engine, "C-7")
    assert block.end == base + timedelta(days=3)
    # In one file too: the newest version wins whatever the line order.
    ingest_file(
        engine,
        name="contracts-c.csv",
        data=_csv(
            _row("C-8", 3, "modified", cars[1].plate, base, base + timedelta(hours=5)),
            _row("C-8", 1, "created", cars[1].plate, base, base + timedelta(days=2)),
        ),
    )
    [block] = _blocks(engine, "C-8")
    assert block.end == base + timedelta(hours=5)


def test_a_modification_is_applied_by_moving_the_block(fleet_world):
    engine, _, cars, base = fleet_world
    plate = cars[0].plate
    ingest_file(
        engine,
        name="contracts-1.csv",
        data=_csv(_row("C-9", 1, "created", plate, base, base + timedelta(days=1))),
    )
    ingest_file(
        engine,
        name="contracts-2.csv",
        data=_csv(
            _row("C-9", 2, "modified", plate, base + timedelta(days=1), base + timedelta(days=2))
        ),
    )
    [block] = _blocks(engine, "C-9")
    assert (block.start, block.end) == (base + timedelta(days=1), base + timedelta(days=2))
    with engine.connect() as c:
        kinds = c.execute(
            text("SELECT kind FROM availability_events WHERE vehicle_id = :v ORDER BY id"),
            {"v": cars[0].id},
        ).scalars()
        assert list(kinds)[-2:] == ["reservation_created", "block_moved"]


def test_a_modification_into_a_collision_is_reported_with_suggestions_not_dropped(fleet_world):
    engine, _, cars, base = fleet_world
    plate = cars[0].plate
    ingest_file(
        engine,
        name="contracts-1.csv",
        data=_csv(
            _row("C-1", 1, "created", plate, base, base + timedelta(days=1)),
            _row("C-2", 1, "created", plate, base + timedelta(days=3), base + timedelta(days=4)),
        ),
    )
    moved = ingest_file(
        engine,
        name="contracts-2.csv",
        data=_csv(_row("C-1", 2, "extended", plate, base, base + timedelta(days=3, hours=6))),
    )
    assert moved.conflicted == 1
    report = moved.conflicts[0]
    assert report["external_id"] == "C-1"
    assert "already spoken for" in report["reason"]
    # Four other economy cars are free at the lot: they are offered as swaps.
    swaps = [s for s in report["suggestions"] if s["action"] == "swap"]
    assert swaps and all(s["plate"] != plate for s in swaps)
    [c1] = _blocks(engine, "C-1")
    assert c1.end == base + timedelta(days=1)  # left as it was, not half-moved
    with engine.connect() as c:
        outcome = c.execute(text("SELECT outcome FROM contracts WHERE external_id = 'C-1'"))
        assert outcome.scalar_one().startswith("conflict:")
        alert = c.execute(
            text("SELECT kind, severity, details FROM conflict_alerts WHERE cleared_at IS NULL")
        ).one()
        event = c.execute(
            text(
                "SELECT payload FROM availability_events WHERE kind = 'conflict_detected'"
                " ORDER BY id DESC LIMIT 1"
            )
        ).scalar_one()
    assert (alert.kind, alert.severity) == ("feed_collision:C-1", "critical")
    assert event["external_id"] == "C-1" and event["suggestions"]
    # A later version that fits clears the alert.
    ingest_file(
        engine,
        name="contracts-3.csv",
        data=_csv(_row("C-1", 3, "extended", plate, base, base + timedelta(days=2))),
    )
    [c1] = _blocks(engine, "C-1")
    assert c1.end == base + timedelta(days=2)
    with engine.connect() as c:
        assert not c.execute(text("SELECT 1 FROM conflict_alerts WHERE cleared_at IS NULL")).first()


def test_overlapping_new_contracts_in_one_file_book_the_first_and_report_the_second(
    fleet_world,
):
    engine, _, cars, base = fleet_world
    plate = cars[2].plate
    result = ingest_file(
        engine,
        name="contracts-1.csv",
        data=_csv(
            _row("C-A", 1, "created", plate, base, base + timedelta(days=2)),
            _row("C-B", 1, "created", plate, base + timedelta(days=1), base + timedelta(days=3)),
        ),
    )
    assert (result.applied, result.conflicted) == (1, 1)
    assert len(_blocks(engine, "C-A")) == 1
    assert _blocks(engine, "C-B") == []


def test_a_contract_already_under_way_puts_the_car_out_with_the_customer(fleet_world):
    engine, _, cars, base = fleet_world
    now = datetime.now(UTC)
    ingest_file(
        engine,
        name="contracts-1.csv",
        data=_csv(
            _row("C-R", 1, "created", cars[4].plate, now - timedelta(hours=2), base, who="Bo Li")
        ),
    )
    with engine.connect() as c:
        status = c.execute(
            text(
                "SELECT s.current_status, cu.name, s.expected_available_at"
                " FROM vehicle_status_realtime s JOIN customers cu"
                " ON cu.id = s.current_customer_id WHERE s.vehicle_id = :v"
            ),
            {"v": cars[4].id},
        ).one()
        log = c.execute(
            text(
                "SELECT l.source, u.username FROM vehicle_status_log l"
                " JOIN users u ON u.id = l.changed_by WHERE l.vehicle_id = :v"
                " ORDER BY l.id DESC LIMIT 1"
            ),
            {"v": cars[4].id},
        ).one()
    assert (status.current_status, status.name, status.expected_available_at) == (
        "rented",
        "Bo Li",
        base,
    )
    assert (log.source, log.username) == ("feed", "feed-contracts")


def test_cancellation_frees_the_period(fleet_world):
    engine, _, cars, base = fleet_world
    plate = cars[0].plate
    ingest_file(
        engine,
        name="contracts-1.csv",
        data=_csv(_row("C-X", 1, "created", plate, base, base + timedelta(days=1))),
    )
    ingest_file(
        engine,
        name="contracts-2.csv",
        data=_csv(_row("C-X", 2, "cancelled", plate, base, base + timedelta(days=1))),
    )
    [block] = _blocks(engine, "C-X")
    assert block.state == "cancelled"


def test_the_same_customer_is_recognised_across_contracts(fleet_world):
    engine, _, cars, base = fleet_world
    ingest_file(
        engine,
        name="contracts-1.csv",
        data=_csv(
            _row("C-1", 1, "created", cars[0].plate, base, base + timedelta(days=1), who="Zoe Q"),
            _row("C-2", 1, "created", cars[1].plate, base, base + timedelta(days=1), who="Zoe Q"),
        ),
    )
    with engine.connect() as c:
        ids = c.execute(text("SELECT DISTINCT customer_id FROM contracts")).scalars().all()
        names = c.execute(text("SELECT count(*) FROM customers WHERE name = 'Zoe Q'")).scalar()
    assert len(ids) == 1 and names == 1


def test_a_file_that_is_not_ndjson_is_recorded_as_rejected(fleet_world):
    engine, *_ = fleet_world
    result = ingest_file(engine, name="contracts-bad.ndjson", data=b"{not json\n")
    assert result.status == "rejected"
    with engine.connect() as c:
        [reject] = feeds.list_rejects(c, file_id=result.file_id)
    assert reject.reason.startswith("not an NDJSON file: no line is a JSON object")
    assert result.note == reject.reason
    again = ingest_file(engine, name="contracts-bad.ndjson", data=b"{not json\n")
    assert again.status == "duplicate"
