"""Demo data: deterministic, consistent with its own blocks, and searchable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from db import auth, availability
from db.demo import DEMO_LOGINS, DemoSummary, load_demo
from db.errors import InvalidInput

NOW = datetime(2026, 6, 15, 10, tzinfo=UTC)


def _load(conn, *, seed=7, vehicles=120, locations=4, **kwargs) -> DemoSummary:
    return load_demo(conn, vehicles=vehicles, locations=locations, seed=seed, now=NOW, **kwargs)


def _fleet(conn):
    return conn.execute(
        text("SELECT plate, vin, make, model, year, colour, features FROM vehicles ORDER BY id")
    ).all()


def _count(conn, sql, **params):
    return conn.execute(text(sql), params).scalar_one()


def test_same_seed_gives_the_same_fleet_and_another_seed_does_not(conn):
    first = conn.begin_nested()
    _load(conn, seed=42)
    fleet = _fleet(conn)
    shapes = conn.execute(
        text(
            "SELECT kind, state, lower(period), upper(period) FROM blocks"
            " ORDER BY vehicle_id, lower(period)"
        )
    ).all()
    first.rollback()

    second = conn.begin_nested()
    _load(conn, seed=42)
    assert _fleet(conn) == fleet
    assert (
        conn.execute(
            text(
                "SELECT kind, state, lower(period), upper(period) FROM blocks"
                " ORDER BY vehicle_id, lower(period)"
            )
        ).all()
        == shapes
    )
    second.rollback()

    _load(conn, seed=43)
    assert {r.plate for r in _fleet(conn)} != {r.plate for r in fleet}


def test_counts_match_the_summary_and_the_request(conn):
    summary = _load(conn, vehicles=150, locations=5)
    assert summary.vehicles == _count(conn, "SELECT count(*) FROM vehicles") == 150
    assert summary.locations == _count(conn, "SELECT count(*) FROM locations") == 5
    assert 6 <= summary.categories == _count(conn, "SELECT count(*) FROM vehicle_categories") <= 8
    assert (
        summary.users == _count(conn, "SELECT count(*) FROM users") == 1 + 3 * 5 + len(DEMO_LOGINS)
    )
    assert summary.customers == _count(conn, "SELECT count(*) FROM customers") == 75
    assert summary.blocks == _count(conn, "SELECT count(*) FROM blocks")
    assert 5 * 150 <= summary.blocks <= 11 * 150  # about 8 per vehicle by default
    assert _count(conn, "SELECT count(*) FROM users WHERE username = 'system'") == 1
    zones = dict(conn.execute(text("SELECT code, time_zone FROM locations")).all())
    assert zones == {
        "BER1": "Europe/Berlin",
        "MUC1": "Europe/Berlin",
        "HAM1": "Europe/Berlin",
        "VIE1": "Europe/Vienna",
        "ZRH1": "Europe/Zurich",
    }
    event = conn.execute(
        text("SELECT payload FROM availability_events WHERE kind = 'demo_loaded'")
    ).scalar_one()
    assert event["vehicles"] == 150 and event["blocks"] == summary.blocks


def test_more_locations_than_cities_get_numbered_branches(conn):
    summary = _load(conn, vehicles=30, locations=40)
    codes = conn.execute(text("SELECT code FROM locations ORDER BY id")).scalars().all()
    assert summary.locations == len(set(codes)) == 40
    assert {"BER1", "BER2", "NYC1", "SYD1", "BER3"} <= set(codes)


def test_every_vehicle_has_one_live_status_and_a_history_that_ends_there(conn):
    _load(conn)
    rows = conn.execute(
        text(
            "SELECT s.current_status, s.location_id, s.version, s.last_updated, l.new_status,"
            " l.new_location_id, l.new_state, l.version AS log_version, l.changed_at,"
            " (SELECT count(*) FROM vehicle_status_log a WHERE a.vehicle_id = v.id) AS changes,"
            " (SELECT min(changed_at) FROM vehicle_status_log a WHERE a.vehicle_id = v.id)"
            "   AS first_change"
            " FROM vehicles v JOIN vehicle_status_realtime s ON s.vehicle_id = v.id"
            " JOIN LATERAL (SELECT * FROM vehicle_status_log a WHERE a.vehicle_id = v.id"
            "   ORDER BY a.version DESC LIMIT 1) l ON true"
        )
    ).all()
    assert len(rows) == 120
    for r in rows:
        assert r.version == r.log_version == r.changes
        assert r.new_status == r.new_state["status"] == r.current_status
        assert r.new_location_id == r.new_state["location_id"] == r.location_id
        assert r.changed_at == r.last_updated
        # Past the 90 days PostgreSQL keeps: the archive job has history to move.
        assert r.first_change < NOW - timedelta(days=150)
    chained = _count(
        conn,
        "SELECT count(*) FROM (SELECT old_status, lag(new_status) OVER w AS before"
        " FROM vehicle_status_log WINDOW w AS (PARTITION BY vehicle_id ORDER BY version)) t"
        " WHERE old_status IS DISTINCT FROM before",
    )
    assert chained == 0
    events = _count(conn, "SELECT count(*) FROM availability_events WHERE kind = 'status_changed'")
    assert events == _count(conn, "SELECT count(*) FROM vehicle_status_log")


def test_live_blocks_never_overlap_and_follow_each_other_from_lot_to_lot(conn):
    summary = _load(conn, vehicles=200, locations=6)
    wrong_buffer = _count(
        conn,
        "SELECT count(*) FROM blocks b JOIN vehicles v ON v.id = b.vehicle_id"
        " JOIN vehicle_categories c ON c.id = v.category_id WHERE upper(b.blocked) <>"
        " upper(b.period) + CASE WHEN b.kind IN ('maintenance', 'transfer') THEN interval '0'"
        " ELSE c.prep_buffer END",
    )
    assert wrong_buffer == 0
    chained = conn.execute(
        text(
            "SELECT count(*) FILTER (WHERE prev_blocked > lower(blocked)) AS overlaps,"
            " count(*) FILTER (WHERE prev_end_location <> start_location_id) AS breaks"
            " FROM (SELECT blocked, start_location_id,"
            "   lag(upper(blocked)) OVER w AS prev_blocked,"
            "   lag(end_location_id) OVER w AS prev_end_location"
            "   FROM blocks WHERE state IN ('active', 'completed')"
            "   WINDOW w AS (PARTITION BY vehicle_id ORDER BY lower(period))) t"
        )
    ).one()
    assert chained.overlaps == 0
    # The only lot changes between blocks are the seeded "booked where the car is not" ones.
    assert 1 <= chained.breaks < summary.conflicts_seeded
    late_or_early = conn.execute(
        text(
            "SELECT count(*) FILTER (WHERE finished_at > scheduled_end) AS late,"
            " count(*) FILTER (WHERE finished_at < scheduled_end) AS early,"
            " count(*) FILTER (WHERE start_location_id <> end_location_id) AS one_way,"
            " count(*) FILTER (WHERE upper(period) <> finished_at) AS wrong_end"
            " FROM blocks WHERE kind = 'rental' AND state = 'completed'"
        )
    ).one()
    assert late_or_early.late > 0 and late_or_early.early > 0 and late_or_early.one_way > 0
    assert late_or_early.wrong_end == 0


def test_cars_on_a_lot_stand_where_their_last_block_ended(conn):
    _load(conn)
    misplaced = _count(
        conn,
        "SELECT count(*) FROM vehicle_status_realtime s JOIN vehicles v ON v.id = s.vehicle_id"
        " LEFT JOIN LATERAL (SELECT b.end_location_id FROM blocks b"
        "   WHERE b.vehicle_id = s.vehicle_id AND b.state = 'completed'"
        "   ORDER BY upper(b.period) DESC LIMIT 1) last ON true"
        " WHERE s.current_status IN ('available', 'cleaning')"
        " AND s.location_id <> coalesce(last.end_location_id, v.home_location_id)",
    )
    assert misplaced == 0


def test_overdue_rentals_are_past_due_and_one_is_promised_to_the_next_customer(conn):
    summary = _load(conn)
    overdue = conn.execute(
        text(
            "SELECT b.vehicle_id, upper(b.period) AS due, s.current_status,"
            " s.expected_available_at, s.current_customer_id, b.customer_id"
            " FROM blocks b JOIN vehicle_status_realtime s ON s.block_id = b.id"
            " WHERE b.kind = 'rental' AND b.state = 'active' AND upper(b.period) < :now"
        ),
        {"now": NOW},
    ).all()
    assert len(overdue) == summary.overdue >= 1
    for r in overdue:
        assert r.current_status == "rented" and r.expected_available_at == r.due
        assert r.current_customer_id == r.customer_id is not None
    next_pickups = conn.execute(
        text(
            "SELECT min(lower(b.period)) FROM blocks b WHERE b.vehicle_id = ANY(:ids)"
            " AND b.kind = 'reservation' GROUP BY b.vehicle_id"
        ),
        {"ids": [r.vehicle_id for r in overdue]},
    ).scalars()
    assert any(p - NOW <= timedelta(hours=6) for p in next_pickups)


def test_cars_in_transit_have_a_destination_and_a_departed_transfer(conn):
    summary = _load(conn)
    rows = conn.execute(
        text(
            "SELECT s.location_id, s.destination_location_id, s.expected_available_at,"
            " b.kind, b.started_at, b.start_location_id, b.end_location_id, upper(b.period) AS eta,"
            " b.period @> CAST(:now AS timestamptz) AS under_way"
            " FROM vehicle_status_realtime s JOIN blocks b ON b.id = s.block_id"
            " WHERE s.current_status = 'in_transit'"
        ),
        {"now": NOW},
    ).all()
    assert len(rows) == summary.in_transit >= 1
    for r in rows:
        assert r.kind == "transfer" and r.started_at is not None and r.under_way
        assert r.location_id == r.start_location_id != r.destination_location_id
        assert r.destination_location_id == r.end_location_id
        assert r.expected_available_at == r.eta


def test_search_offers_free_cars_on_the_lot_and_never_the_late_ones(conn):
    _load(conn, vehicles=300, locations=3)
    loc, cat, prep = conn.execute(
        text(
            "SELECT s.location_id, v.category_id, c.prep_buffer FROM vehicle_status_realtime s"
            " JOIN vehicles v ON v.id = s.vehicle_id"
            " JOIN vehicle_categories c ON c.id = v.category_id"
            " GROUP BY 1, 2, 3 ORDER BY count(*) DESC, 1, 2 LIMIT 1"
        )
    ).one()
    start, end = NOW + timedelta(days=3), NOW + timedelta(days=5)
    hits = availability.search(
        conn, start=start, end=end, location_id=loc, category_id=cat, now=NOW, limit=1000
    )
    assert hits
    free = set(
        conn.execute(
            text(
                "SELECT v.id FROM vehicles v WHERE v.category_id = :cat AND NOT EXISTS"
                " (SELECT 1 FROM blocks b WHERE b.vehicle_id = v.id"
                "  AND b.state IN ('active', 'completed')"
                "  AND b.blocked && tstzrange(:start, CAST(:end AS timestamptz) + :prep))"
            ),
            {"cat": cat, "start": start, "end": end, "prep": prep},
        ).scalars()
    )
    late = set(
        conn.execute(
            text(
                "SELECT vehicle_id FROM vehicle_status_realtime"
                " WHERE current_status = 'rented' AND expected_available_at < :now"
            ),
            {"now": NOW},
        ).scalars()
    )
    found = {h.vehicle_id for h in hits}
    assert found <= free
    assert not found & late
    for hit in hits:
        where = conn.execute(
            text(
                "SELECT coalesce((SELECT b.end_location_id FROM blocks b"
                "   WHERE b.vehicle_id = s.vehicle_id AND b.moves"
                "   AND b.state IN ('active', 'completed')"
                "   AND upper(b.period) <= :start AND upper(b.period) > :now"
                "   ORDER BY upper(b.period) DESC LIMIT 1), s.location_id)"
                " FROM vehicle_status_realtime s WHERE s.vehicle_id = :v"
            ),
            {"v": hit.vehicle_id, "start": start, "now": NOW},
        ).scalar_one()
        assert where == loc


def test_many_blocks_per_vehicle_spread_over_a_longer_window(conn):
    summary = _load(conn, vehicles=40, locations=4, blocks_per_vehicle=50)
    assert 35 * 40 <= summary.blocks <= 65 * 40
    first, last = conn.execute(
        text("SELECT min(lower(period)), max(upper(period)) FROM blocks")
    ).one()
    assert last - first > timedelta(days=300)


def test_loading_twice_is_refused_and_progress_is_reported(conn):
    stages = []
    _load(conn, vehicles=20, progress=lambda stage, done, total: stages.append((stage, done)))
    assert {"locations", "vehicles", "blocks", "status"} <= {s for s, _ in stages}
    assert ("vehicles", 20) in stages
    with pytest.raises(InvalidInput, match="already has vehicles") as err:
        _load(conn, vehicles=20)
    assert "--if-empty" in err.value.hint


def test_demo_logins_sign_in_with_their_role_at_the_first_location(conn):
    _load(conn, vehicles=20, locations=2)
    first_lot = _count(conn, "SELECT id FROM locations WHERE code = 'BER1'")
    assert {role for _, role, _ in DEMO_LOGINS} == {"agent", "manager", "analyst", "admin"}
    for username, role, password in DEMO_LOGINS:
        user = auth.authenticate(conn, username=username, password=password)
        assert (user.username, user.role, user.home_location_id) == (username, role, first_lot)
    stored = (
        conn.execute(text("SELECT password_hash FROM users WHERE username LIKE 'demo-%'"))
        .scalars()
        .all()
    )
    assert len(stored) == 4 and all(h.startswith("$argon2id$") for h in stored)
    # Only the demo logins have a password; the generated staff cannot sign in.
    assert _count(conn, "SELECT count(*) FROM users WHERE password_hash IS NOT NULL") == 4


def test_a_fleet_without_bookings_loads_too(conn):
    # What the ingest benchmark loads (blocks_per_vehicle=0): each car's history is one change,
    # so the seeded dispute has no place between two changes and is left out.
    summary = _load(conn, vehicles=40, blocks_per_vehicle=0)
    assert summary.vehicles == 40
    assert _count(conn, "SELECT count(*) FROM blocks") == 0
    stray = _count(
        conn,
        "SELECT count(*) FROM vehicle_status_realtime s JOIN LATERAL (SELECT new_status FROM"
        " vehicle_status_log l WHERE l.vehicle_id = s.vehicle_id ORDER BY l.id DESC LIMIT 1) last"
        " ON true WHERE last.new_status <> s.current_status",
    )
    assert stray == 0
