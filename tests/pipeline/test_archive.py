"""Archiving history to Parquet: right partitions, verified, deleted once, never lost or doubled."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Connection, Engine, text

from db import audit, history, status
from db.errors import InvalidInput
from pipeline import analytics
from pipeline.archive import ArchiveBusy, ArchiveError, ArchivePart, archive_history
from tests.conftest import World, add_vehicle, build_world

CYCLE = ("cleaning", "available", "maintenance", "available")


def in_month(now: datetime, days_ago: int, hour: int = 0) -> datetime:
    """A time early in the UTC month `days_ago` days back: never near a month's edge."""
    back = (now - timedelta(days=days_ago)).astimezone(UTC)
    return back.replace(day=3, hour=hour, minute=15, second=0, microsecond=0)


def month_of(t: datetime) -> str:
    return f"{t.astimezone(UTC):%Y-%m}"


def backdate(c: Connection, log_id: int, when: datetime) -> None:
    """Move one status change, and the event it emitted, back in time (test data setup)."""
    vehicle_id, version = c.execute(
        text(
            "UPDATE vehicle_status_log SET changed_at = :t WHERE id = :id RETURNING vehicle_id,"
            " version"
        ),
        {"t": when, "id": log_id},
    ).one()
    c.execute(
        text(
            "UPDATE availability_events SET created_at = :t WHERE vehicle_id = :v AND ("
            " payload->>'log_id' = CAST(:id AS text)"
            " OR (kind = 'vehicle_registered' AND :version = 1))"
        ),
        {"t": when, "v": vehicle_id, "id": log_id, "version": version},
    )


def vehicle_with_history(
    c: Connection, world: World, plate: str, times: list[datetime]
) -> list[int]:
    """Register a vehicle and change its status so its log has one row per time given."""
    v = add_vehicle(c, world, plate)
    ids = [
        c.execute(
            text("SELECT id FROM vehicle_status_log WHERE vehicle_id = :v"), {"v": v.id}
        ).scalar_one()
    ]
    for k in range(len(times) - 1):
        change = status.change_status(
            c,
            vehicle_id=v.id,
            new_status=CYCLE[k % len(CYCLE)],
            changed_by=(world.agent if k % 2 else world.agent2).id,
            reason=f"step {k}",
            metadata={"step": k, "note": "ünïcode ✓"},
        )
        ids.append(change.log_id)
    for log_id, when in zip(ids, times, strict=True):
        backdate(c, log_id, when)
    return ids


def snapshot(engine: Engine, table: str) -> dict[int, dict]:
    """Every row of a history table in its archived form, by id."""
    spec = history.history_table(table)
    with engine.connect() as c:
        rows = c.execute(text(f"SELECT {spec.select_list()} FROM {table}")).mappings()
        return {r["id"]: dict(r) for r in rows}


def parquet_rows(archive_dir: Path, table: str) -> pl.DataFrame:
    files = sorted((archive_dir / table).glob("month=*/*.parquet"))
    if not files:
        return pl.DataFrame()
    return pl.concat([pl.read_parquet(f) for f in files])


def duck_count(database_url: str, tmp_path: Path, archive_dir: Path, view: str) -> int:
    con = analytics.connect(
        postgres_url=database_url, extension_directory=tmp_path / "ext", archive_dir=archive_dir
    )
    try:
        return con.execute(f"SELECT count(*) FROM fleet.{view}").fetchone()[0]
    finally:
        con.close()


@pytest.fixture
def now(committed) -> datetime:
    with committed.connect() as c:
        return c.execute(text("SELECT now()")).scalar_one()


@pytest.fixture
def data(committed, now):
    """Two vehicles with history in two old months and in the last 90 days."""
    with committed.begin() as c:
        world = build_world(c)
        a = vehicle_with_history(
            c,
            world,
            "B AR 1",
            [
                in_month(now, 160),
                in_month(now, 160, 5),
                in_month(now, 120),
                now - timedelta(30),
                now - timedelta(1),
            ],
        )
        b = vehicle_with_history(
            c, world, "B AR 2", [in_month(now, 120, 2), in_month(now, 120, 3), now - timedelta(2)]
        )
    old = {"a": a[:3], "b": b[:2]}
    new = {"a": a[3:], "b": b[2:]}
    return old, new


def test_old_rows_go_to_month_partitions_and_leave_postgres(committed, now, data, tmp_path):
    old, new = data
    before_log = snapshot(committed, "vehicle_status_log")
    before_events = snapshot(committed, "availability_events")
    archive_dir = tmp_path / "archive"
    messages: list[str] = []
    ticks: list[tuple[int, int]] = []

    summary = archive_history(
        committed,
        archive_dir=archive_dir,
        now=now,
        log=messages.append,
        progress=lambda done, total: ticks.append((done, total)),
    )

    old_ids = old["a"] + old["b"]
    m160, m120 = month_of(in_month(now, 160)), month_of(in_month(now, 120))
    log_months = {f"{m.month:%Y-%m}": m for m in summary.months if m.table == "vehicle_status_log"}
    assert set(log_months) == {m160, m120}
    assert (log_months[m160].rows_archived, log_months[m160].files_written) == (2, 1)
    assert (log_months[m120].rows_archived, log_months[m120].rows_deleted) == (3, 3)
    assert log_months[m160].paths == [
        f"vehicle_status_log/month={m160}/part-{old['a'][0]}-{old['a'][1]}.parquet"
    ]
    # Each status change emitted one event, backdated with it: same months, same counts.
    event_months = {
        f"{m.month:%Y-%m}": m.rows_archived
        for m in summary.months
        if m.table == "availability_events"
    }
    assert event_months == {m160: 2, m120: 3}
    assert summary.rows_archived == summary.rows_deleted == 10
    assert ticks[0] == (0, 10) and ticks[-1] == (10, 10)
    assert len(messages) == 4 and all("→" in m for m in messages)

    # PostgreSQL keeps exactly the newer rows.
    live = snapshot(committed, "vehicle_status_log")
    assert sorted(live) == sorted(new["a"] + new["b"])
    assert set(snapshot(committed, "availability_events")).isdisjoint(
        {k for k, e in before_events.items() if e["created_at"] < now - timedelta(days=90)}
    )

    # The files hold the archived rows exactly: JSON as text, times as UTC instants.
    frame = parquet_rows(archive_dir, "vehicle_status_log")
    assert frame.schema["changed_at"] == pl.Datetime("us", "UTC")
    assert frame.schema["new_state"] == pl.String
    assert sorted(frame["id"].to_list()) == sorted(old_ids)
    for row in frame.iter_rows(named=True):
        original = before_log[row["id"]]
        assert row["changed_at"] == original["changed_at"]
        assert json.loads(row["new_state"]) == json.loads(original["new_state"])
        assert json.loads(row["metadata"]) == json.loads(original["metadata"])
        assert row["change_reason"] == original["change_reason"]
    assert {json.loads(m)["note"] for m in frame["metadata"] if m != "{}"} == {"ünïcode ✓"}

    # history_archives names every file with its count, id range and checksum.
    with committed.connect() as c:
        records = history.list_archives(c)
    assert len(records) == 4
    for r in records:
        path = archive_dir / r.path
        assert hashlib.sha256(path.read_bytes()).hexdigest() == r.sha256
        ids = pl.read_parquet(path)["id"]
        assert (r.row_count, r.min_id, r.max_id) == (len(ids), ids.min(), ids.max())
        assert f"month={r.month:%Y-%m}/" in r.path and r.month.day == 1


def test_events_without_seq_stay(committed, now, tmp_path):
    with committed.begin() as c:
        world = build_world(c)
        vehicle_with_history(c, world, "B AR 3", [in_month(now, 130), now - timedelta(3)])
    with committed.begin() as c:
        # An event whose transaction has not committed has no seq yet (set here by hand).
        pending = c.execute(
            text(
                "INSERT INTO availability_events (kind, payload, created_at)"
                " VALUES ('test', '{}', :t) RETURNING id"
            ),
            {"t": in_month(now, 130, 1)},
        ).scalar_one()
    with committed.begin() as c:
        c.execute(text("UPDATE availability_events SET seq = NULL WHERE id = :id"), {"id": pending})

    archive_history(committed, archive_dir=tmp_path / "a", now=now)

    archived = parquet_rows(tmp_path / "a", "availability_events")["id"].to_list()
    assert len(archived) == 1 and pending not in archived
    assert pending in snapshot(committed, "availability_events")


def test_second_run_archives_nothing_and_duplicates_nothing(
    committed, now, data, database_url, tmp_path
):
    archive_dir = tmp_path / "archive"
    total = len(snapshot(committed, "vehicle_status_log"))
    archive_history(committed, archive_dir=archive_dir, now=now)
    files = sorted(archive_dir.rglob("*.parquet"))

    again = archive_history(committed, archive_dir=archive_dir, now=now)

    assert again.rows_archived == again.files_written == 0 and again.months == []
    assert again.orphans_removed == []
    assert sorted(archive_dir.rglob("*.parquet")) == files
    ids = parquet_rows(archive_dir, "vehicle_status_log")["id"].to_list()
    assert len(ids) == len(set(ids)) == 5
    assert duck_count(database_url, tmp_path, archive_dir, "status_history") == total


def test_failure_before_delete_keeps_rows_and_rerun_does_not_duplicate(
    committed, now, data, database_url, tmp_path
):
    archive_dir = tmp_path / "archive"
    before = snapshot(committed, "vehicle_status_log")
    seen: list[ArchivePart] = []

    def crash(part: ArchivePart) -> None:
        seen.append(part)
        if len(seen) == 2:
            raise RuntimeError("disk full (injected)")

    with pytest.raises(RuntimeError, match="injected"):
        archive_history(committed, archive_dir=archive_dir, now=now, before_delete=crash)

    # The first part committed; the second part's file is gone and its rows are all there.
    with committed.connect() as c:
        records = history.list_archives(c)
    assert [r.path for r in records] == [seen[0].relative]
    assert not seen[1].path.exists()
    assert sorted(p.name for p in archive_dir.rglob("*.parquet*")) == [seen[0].path.name]
    live = snapshot(committed, "vehicle_status_log")
    assert set(live) == set(before) - set(range(seen[0].min_id, seen[0].max_id + 1))
    assert duck_count(database_url, tmp_path, archive_dir, "status_history") == len(before)

    summary = archive_history(committed, archive_dir=archive_dir, now=now)

    assert summary.rows_archived == 8  # 10 old rows, 2 of them done by the failed run
    ids = parquet_rows(archive_dir, "vehicle_status_log")["id"].to_list()
    assert len(ids) == len(set(ids)) == 5
    assert duck_count(database_url, tmp_path, archive_dir, "status_history") == len(before)
    assert duck_count(database_url, tmp_path, archive_dir, "events") == len(
        snapshot(committed, "availability_events")
    ) + len(parquet_rows(archive_dir, "availability_events"))


def test_delete_that_would_take_other_rows_rolls_back(committed, now, tmp_path):
    # Ids out of time order (a late backfill): the month's two old rows surround a new one.
    with committed.begin() as c:
        world = build_world(c)
        ids = vehicle_with_history(
            c, world, "B AR 4", [in_month(now, 140), now - timedelta(5), in_month(now, 140, 1)]
        )
    archive_dir = tmp_path / "archive"

    def move_middle_row_into_the_month(part: ArchivePart) -> None:
        # Someone else changes a row inside the id range after the file was verified.
        with committed.begin() as other:
            backdate(other, ids[1], in_month(now, 140, 2))

    with pytest.raises(ArchiveError, match="matched 3 rows but the file holds 2"):
        archive_history(
            committed,
            archive_dir=archive_dir,
            now=now,
            before_delete=move_middle_row_into_the_month,
        )

    assert set(ids) <= set(snapshot(committed, "vehicle_status_log"))
    assert list(archive_dir.rglob("*.parquet")) == []
    summary = archive_history(committed, archive_dir=archive_dir, now=now)
    assert sorted(parquet_rows(archive_dir, "vehicle_status_log")["id"].to_list()) == ids
    assert summary.rows_deleted == summary.rows_archived == 6


def test_orphan_of_a_crashed_run_is_ignored_then_removed(
    committed, now, data, database_url, tmp_path
):
    archive_dir = tmp_path / "archive"
    total = len(snapshot(committed, "vehicle_status_log"))
    # A run that died between writing its file and committing the delete: the file is there,
    # unrecorded, and its rows are still in PostgreSQL.
    from pipeline.archive import _write_part

    month = date.fromisoformat(month_of(in_month(now, 120)) + "-01")
    with committed.connect() as c:
        rows = history.fetch_batch(
            c, table="vehicle_status_log", month=month, cutoff=now - timedelta(days=90)
        )
    orphan = _write_part(archive_dir, table="vehicle_status_log", month=month, rows=rows)
    (orphan.path.parent / ".part-7-9.parquet.tmp").write_bytes(b"half written")

    assert duck_count(database_url, tmp_path, archive_dir, "status_history") == total

    summary = archive_history(committed, archive_dir=archive_dir, now=now)

    assert sorted(summary.orphans_removed) == [
        f"vehicle_status_log/month={month:%Y-%m}/.part-7-9.parquet.tmp",
        orphan.relative,
    ]
    assert summary.rows_archived == 10
    ids = parquet_rows(archive_dir, "vehicle_status_log")["id"].to_list()
    assert len(ids) == len(set(ids)) == 5
    assert duck_count(database_url, tmp_path, archive_dir, "status_history") == total


def test_rollback_whose_original_is_archived_keeps_its_link(committed, now, database_url, tmp_path):
    with committed.begin() as c:
        world = build_world(c)
        # Vehicle 1: the wrong change is old, its rollback recent.
        v1 = add_vehicle(c, world, "B RB 1")
        wrong = status.change_status(
            c, vehicle_id=v1.id, new_status="maintenance", changed_by=world.agent.id, reason="oops"
        ).log_id
        # Vehicle 2: change and rollback both old.
        v2 = add_vehicle(c, world, "B RB 2")
        wrong2 = status.change_status(
            c, vehicle_id=v2.id, new_status="cleaning", changed_by=world.agent.id, reason="oops"
        ).log_id
    with committed.begin() as c:
        fixed2 = audit.rollback_change(
            c, log_id=wrong2, rolled_back_by=world.manager.id, reason="wrong car"
        ).log_id
        for log_id in c.execute(
            text("SELECT id FROM vehicle_status_log WHERE vehicle_id IN (:a, :b) AND id <> :keep"),
            {"a": v1.id, "b": v2.id, "keep": fixed2},
        ).scalars():
            backdate(c, log_id, in_month(now, 100, log_id % 20))
        backdate(c, fixed2, in_month(now, 100, 21))
    with committed.begin() as c:
        fixed = audit.rollback_change(
            c, log_id=wrong, rolled_back_by=world.manager.id, reason="wrong car"
        ).log_id

    archive_history(committed, archive_dir=tmp_path / "a", now=now)

    with committed.begin() as c:
        # The rollback stays, readable in the audit trail; the key to the archived row is null.
        entry = audit.get_entry(c, log_id=fixed)
        assert entry.reverts_log_id is None and entry.metadata["reverts"] == wrong
        assert audit.history(c, vehicle_id=v1.id)[0].id == fixed
        # The vehicle goes on changing (and being rolled back) as usual.
        again = status.change_status(
            c, vehicle_id=v1.id, new_status="cleaning", changed_by=world.agent.id, reason="wash"
        )
        audit.rollback_change(c, log_id=again.log_id, rolled_back_by=world.manager.id, reason="no")
    frame = parquet_rows(tmp_path / "a", "vehicle_status_log")
    archived = {r["id"]: r for r in frame.iter_rows(named=True)}
    assert wrong in archived and fixed not in archived
    assert archived[fixed2]["reverts_log_id"] == wrong2  # both archived: the link as it was

    con = analytics.connect(
        postgres_url=database_url, extension_directory=tmp_path / "ext", archive_dir=tmp_path / "a"
    )
    try:
        links = con.execute(
            "SELECT r.id, o.id, o.new_status FROM fleet.status_history r"
            " JOIN fleet.status_history o ON o.id = r.reverts_log_id ORDER BY r.id"
        ).fetchall()
    finally:
        con.close()
    assert (fixed2, wrong2, "cleaning") in links
    assert (fixed, wrong, "maintenance") in links

    # When the rollback ages out too, its archived row carries the link again.
    with committed.begin() as c:
        backdate(c, fixed, in_month(now, 100, 22))
    archive_history(committed, archive_dir=tmp_path / "a", now=now)
    frame = parquet_rows(tmp_path / "a", "vehicle_status_log")
    assert frame.filter(pl.col("id") == fixed)["reverts_log_id"].to_list() == [wrong]


def test_duckdb_history_spans_archive_and_live_with_one_set_of_types(
    committed, now, data, database_url, tmp_path
):
    archive_dir = tmp_path / "archive"
    before = snapshot(committed, "vehicle_status_log")
    archive_history(committed, archive_dir=archive_dir, now=now, batch_size=2)

    con = analytics.connect(
        postgres_url=database_url, extension_directory=tmp_path / "ext", archive_dir=archive_dir
    )
    try:
        total, oldest, newest = con.execute(
            "SELECT count(*), min(changed_at), max(changed_at) FROM fleet.status_history"
        ).fetchone()
        by_plate = con.execute(
            "SELECT v.plate, count(*) FROM fleet.status_history h"
            " JOIN fleet.vehicles v ON v.id = h.vehicle_id GROUP BY ALL ORDER BY 1"
        ).fetchall()
        states = con.execute(
            "SELECT new_state->>'status' = new_status, count(*) FROM fleet.status_history"
            " GROUP BY ALL"
        ).fetchall()
        types = dict(
            con.execute(
                "SELECT column_name, column_type FROM (DESCRIBE fleet.status_history)"
            ).fetchall()
        )
        archived_half = con.execute(
            "SELECT count(*) FROM fleet.status_history WHERE changed_at < ?",
            [now - timedelta(days=90)],
        ).fetchone()[0]
    finally:
        con.close()
    assert total == len(before) == 8
    assert archived_half == 5
    assert (oldest, newest) == (
        min(r["changed_at"] for r in before.values()),
        max(r["changed_at"] for r in before.values()),
    )
    assert by_plate == [("B AR 1", 5), ("B AR 2", 3)]
    assert states == [(True, 8)]
    assert types["new_state"] == "JSON" and types["changed_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["id"] == "BIGINT" and "month" not in types
    # batch_size=2 splits the three-row month into two recorded files.
    assert len(list((archive_dir / "vehicle_status_log").rglob("*.parquet"))) == 3


def test_bad_input_is_refused_with_the_reason(committed, tmp_path):
    with pytest.raises(InvalidInput, match="retention_days must be at least 1"):
        archive_history(committed, archive_dir=tmp_path, retention_days=0)
    with pytest.raises(InvalidInput, match="now has no time zone"):
        archive_history(committed, archive_dir=tmp_path, now=datetime(2026, 1, 1))
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInput, match="is a file"):
        archive_history(committed, archive_dir=tmp_path / "file")
    with pytest.raises(InvalidInput, match="not an archivable table"):
        history.history_table("blocks")


def test_a_second_run_at_the_same_time_is_refused(committed, tmp_path):
    with committed.connect() as holder:
        holder = holder.execution_options(isolation_level="AUTOCOMMIT")
        assert history.try_lock_archiver(holder)
        try:
            with pytest.raises(ArchiveBusy, match="another archive run"):
                archive_history(committed, archive_dir=tmp_path)
        finally:
            history.unlock_archiver(holder)
    assert archive_history(committed, archive_dir=tmp_path).rows_archived == 0
