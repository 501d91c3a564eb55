"""Incremental materialized availability: only changed vehicles are recomputed, days roll."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text

from db import holds, maintenance, status
from db.errors import InvalidInput
from pipeline.materialize import LOCK_KEY, STATE_NAME, materialize_incremental
from tests.conftest import World, add_vehicle, build_world

BERLIN = ZoneInfo("Europe/Berlin")
DAYS = 5


def _at(day: date, hour: float) -> datetime:
    return datetime.combine(day, time(0), tzinfo=BERLIN) + timedelta(hours=hour)


@pytest.fixture
def fleet(committed: Engine) -> tuple[World, list[int]]:
    """The reference world with three committed cars (two in Berlin, one in New York)."""
    with committed.begin() as c:
        world = build_world(c)
        ids = [
            add_vehicle(c, world, "B IN 1").id,
            add_vehicle(c, world, "B IN 2").id,
            add_vehicle(c, world, "NY IN 3", location=world.nyc).id,
        ]
    return world, ids


@pytest.fixture
def today(fleet) -> date:
    world, _ = fleet
    return world.now.astimezone(BERLIN).date()


def _rows(engine: Engine) -> dict[tuple[int, date], dict]:
    with engine.connect() as c:
        return {
            (r["vehicle_id"], r["day"]): dict(r)
            for r in c.execute(
                text(
                    "SELECT vehicle_id, day, free_minutes, is_available, blocking_reason,"
                    " blocking_reference_id, cached_at FROM availability_cache"
                )
            ).mappings()
        }


def test_first_run_fills_every_vehicle_and_day(committed, fleet, today):
    _, ids = fleet
    lines: list[str] = []

    summary = materialize_incremental(committed, days=DAYS, today=today, log=lines.append)

    assert summary.full and summary.reason == "first run"
    assert (summary.vehicles, summary.rows, summary.batches) == (3, 3 * DAYS, 1)
    rows = _rows(committed)
    assert set(rows) == {(v, today + timedelta(days=d)) for v in ids for d in range(DAYS)}
    assert all(r["is_available"] for r in rows.values())
    assert any("batch 1: 3 vehicles" in line for line in lines)
    with committed.connect() as c:
        mark = c.execute(
            text("SELECT value FROM pipeline_state WHERE name = :n"), {"n": STATE_NAME}
        ).scalar_one()
        newest = c.execute(text("SELECT max(seq) FROM availability_events")).scalar_one()
    assert mark["seq"] == newest == summary.to_seq
    assert mark["first_day"] == today.isoformat()


def test_a_run_without_changes_touches_nothing(committed, fleet, today):
    materialize_incremental(committed, days=DAYS, today=today)
    before = _rows(committed)

    summary = materialize_incremental(committed, days=DAYS, today=today)

    assert not summary.full
    assert (summary.vehicles, summary.rows, summary.batches) == (0, 0, 0)
    assert summary.reason == "no changes since last run"
    assert _rows(committed) == before  # cached_at included: nothing was rewritten


def test_a_status_change_recomputes_only_that_vehicle(committed, fleet, today):
    world, (a, b, c) = fleet
    materialize_incremental(committed, days=DAYS, today=today)
    before = _rows(committed)
    with committed.begin() as conn:
        status.change_status(
            conn,
            vehicle_id=b,
            new_status="out_of_service",
            changed_by=world.manager.id,
            reason="gearbox fault",
        )

    summary = materialize_incremental(committed, days=DAYS, today=today)

    assert not summary.full
    assert (summary.vehicles, summary.rows) == (1, DAYS)
    after = _rows(committed)
    for d in range(DAYS):
        day = today + timedelta(days=d)
        assert after[(b, day)]["free_minutes"] == 0
        assert after[(b, day)]["blocking_reason"] == "out_of_service"
        assert not after[(b, day)]["is_available"]
        # The other cars were not rewritten.
        assert after[(a, day)] == before[(a, day)]
        assert after[(c, day)] == before[(c, day)]


def test_a_new_block_recomputes_only_that_vehicle_and_shows_in_its_row(committed, fleet, today):
    world, (a, b, _) = fleet
    materialize_incremental(committed, days=DAYS, today=today)
    before = _rows(committed)
    day = today + timedelta(days=2)
    with committed.begin() as conn:
        work = maintenance.schedule_maintenance(
            conn, vehicle_id=a, start=_at(day, 8), end=_at(day, 11), created_by=world.agent.id
        )

    summary = materialize_incremental(committed, days=DAYS, today=today)

    assert (summary.vehicles, summary.rows) == (1, DAYS)
    row = _rows(committed)[(a, day)]
    assert row["free_minutes"] == 1440 - 180
    assert (row["blocking_reason"], row["blocking_reference_id"]) == ("maintenance", work.id)
    assert _rows(committed)[(b, day)] == before[(b, day)]


def test_a_hold_that_ran_out_is_recomputed_though_no_event_says_so(committed, fleet, today):
    world, (a, _, _) = fleet
    day = today + timedelta(days=1)
    with committed.begin() as conn:
        hold = holds.place_hold(
            conn,
            vehicle_id=a,
            start=_at(day, 9),
            end=_at(day, 12),
            location_id=world.ber.id,
            held_by=world.agent.id,
        )
    materialize_incremental(committed, days=DAYS, today=today)
    assert _rows(committed)[(a, day)]["blocking_reason"] == "hold"
    with committed.begin() as conn:
        # The clock reaching the hold's end, without waiting minutes for it.
        conn.execute(
            text("UPDATE blocks SET expires_at = clock_timestamp() WHERE id = :id"),
            {"id": hold.id},
        )

    summary = materialize_incremental(committed, days=DAYS, today=today)

    assert summary.vehicles == 1
    row = _rows(committed)[(a, day)]
    assert (row["free_minutes"], row["is_available"], row["blocking_reason"]) == (1440, True, None)


def test_a_new_day_rolls_the_window_and_drops_past_days(committed, fleet, today):
    _, (a, b, c) = fleet
    materialize_incremental(committed, days=DAYS, today=today)
    with committed.begin() as conn:
        # Retired cars leave the table at the next full rebuild.
        conn.execute(text("UPDATE vehicles SET active = false WHERE id = :v"), {"v": c})
    tomorrow = today + timedelta(days=1)
    lines: list[str] = []

    summary = materialize_incremental(committed, days=DAYS, today=tomorrow, log=lines.append)

    assert summary.full and "window moved" in summary.reason
    assert (summary.vehicles, summary.rows) == (2, 2 * DAYS)
    # The past day of all three cars and the retired car's remaining days.
    assert summary.deleted_rows == 3 + (DAYS - 1)
    rows = _rows(committed)
    assert set(rows) == {(v, tomorrow + timedelta(days=d)) for v in (a, b) for d in range(DAYS)}
    assert any("window moved" in line for line in lines)


def test_a_longer_window_rebuilds_everything(committed, fleet, today):
    materialize_incremental(committed, days=DAYS, today=today)

    summary = materialize_incremental(committed, days=DAYS + 2, today=today)

    assert summary.full and "length changed" in summary.reason
    assert summary.rows == 3 * (DAYS + 2)


def test_small_batches_each_log_a_line(committed, fleet, today):
    lines: list[str] = []

    summary = materialize_incremental(
        committed, days=2, today=today, log=lines.append, batch_size=2
    )

    assert (summary.batches, summary.rows) == (2, 6)
    batch_lines = [line for line in lines if line.startswith("materialize: batch")]
    assert len(batch_lines) == 2
    assert "2 vehicles" in batch_lines[0] and "1 vehicles" in batch_lines[1]


def test_a_run_while_another_holds_the_lock_steps_aside(committed, fleet, today):
    with committed.connect() as other:
        assert other.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
        try:
            summary = materialize_incremental(committed, days=DAYS, today=today)
        finally:
            other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            other.commit()

    assert summary.skipped and summary.rows == 0
    assert _rows(committed) == {}
    # Once the other run is done the next one does the work.
    assert materialize_incremental(committed, days=DAYS, today=today).rows == 3 * DAYS


@pytest.mark.parametrize("days", [0, 401])
def test_a_window_out_of_range_is_refused_with_the_setting_to_fix(committed, days):
    with pytest.raises(InvalidInput, match="days must be between 1 and 400") as err:
        materialize_incremental(committed, days=days)
    assert "FLEET_MATERIALIZE_DAYS" in (err.value.hint or "")
