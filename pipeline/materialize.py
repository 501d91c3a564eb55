"""Incremental materialized availability: recompute only the vehicles whose blocks changed.

`availability_cache` holds one row per active vehicle and local day for a window of days
starting today. Rebuilding it all every few minutes costs days x vehicles rows each time;
almost every car is unchanged between two runs. Every change that moves availability goes
through the engine and appends an event carrying its vehicle, and events get a commit-ordered
`seq` (migration 0002), so "events with seq above the last one processed" names exactly the
vehicles to recompute. The watermark lives in `pipeline_state` under `materialize.seq`.

Everything is recomputed when there is no watermark yet, when the window moved (a new day
began: the days before it are dropped and a new last day appears for every car) or when its
length changed. Hold expiry is the one change without an event (a hold simply runs out), so
the vehicles whose holds ran out since the previous run are recomputed too.

Not covered by events, so only picked up by the next full rebuild (at the latest the next day):
changes to a category's prep buffer or a lot's time zone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, text

from db.availability import materialize
from db.errors import InvalidInput
from db.events import latest_seq, to_json

STATE_NAME = "materialize.seq"
# Session-level advisory lock: two runs at once (a slow run overlapping the next schedule, or
# two schedulers) would each do the whole work; the second one steps aside instead.
LOCK_KEY = 7340040
MAX_DAYS = 400


class MaterializeSummary(BaseModel):
    """What one incremental run did."""

    skipped: bool = False
    full: bool
    reason: str
    first_day: date
    days: int
    vehicles: int
    rows: int
    batches: int
    deleted_rows: int
    from_seq: int
    to_seq: int


class _Watermark(BaseModel):
    seq: int
    first_day: date
    days: int
    at: datetime


def _noop(_: str) -> None:
    return None


def materialize_incremental(
    engine: Engine,
    *,
    days: int,
    today: date | None = None,
    log: Callable[[str], None] | None = None,
    batch_size: int = 500,
) -> MaterializeSummary:
    """Bring availability_cache up to date for `days` days from `today`, recomputing little.

    `today` defaults to the earliest local date among the lots, so every lot's own today is
    in the window. Each batch of vehicles is its own transaction; the watermark advances
    only after all batches, so a run that fails half-way is simply redone by the next one
    (the rows are upserts). Returns counts; `skipped` when another run holds the lock.
    """
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(
            f"days must be between 1 and {MAX_DAYS}, got {days}",
            field="days",
            hint="set FLEET_MATERIALIZE_DAYS to how many days ahead the table should cover",
        )
    if batch_size < 1:
        raise InvalidInput(
            f"batch_size must be at least 1, got {batch_size}",
            field="batch_size",
            hint="use a few hundred vehicles per transaction",
        )
    say = log or _noop
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock_conn:
        if not lock_conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar():
            say("materialize: another run is in progress; skipping this one")
            with engine.connect() as conn:
                first_day = today or _default_today(conn)
                seq = _read_watermark(conn)
            return MaterializeSummary(
                skipped=True,
                full=False,
                reason="another run holds the lock",
                first_day=first_day,
                days=days,
                vehicles=0,
                rows=0,
                batches=0,
                deleted_rows=0,
                from_seq=seq.seq if seq else 0,
                to_seq=seq.seq if seq else 0,
            )
        try:
            return _run(engine, days=days, today=today, say=say, batch_size=batch_size)
        finally:
            try:
                lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            except Exception:
                # A session lock outlives a failed unlock on a pooled connection; discarding
                # the connection is what releases it.
                lock_conn.invalidate()


def _run(
    engine: Engine,
    *,
    days: int,
    today: date | None,
    say: Callable[[str], None],
    batch_size: int,
) -> MaterializeSummary:
    with engine.begin() as conn:
        # The newest seq first: anything committed after this read gets a higher seq and is
        # picked up next time, while a vehicle list read first could miss a car registered
        # between the two reads even though its event would count as processed.
        to_seq = latest_seq(conn)
        started = conn.execute(text("SELECT now()")).scalar_one()
        first_day = today or _default_today(conn)
        mark = _read_watermark(conn)
        from_seq = mark.seq if mark else 0
        if mark is None:
            reason = "first run"
        elif mark.first_day != first_day:
            reason = f"window moved from {mark.first_day} to {first_day}"
        elif mark.days != days:
            reason = f"window length changed from {mark.days} to {days} days"
        else:
            reason = ""
        full = bool(reason)
        deleted = 0
        if full:
            vehicle_ids = _active_vehicles(conn)
            deleted = _drop_outside_window(conn, first_day=first_day, days=days)
        else:
            assert mark is not None
            vehicle_ids = _changed_vehicles(
                conn, from_seq=from_seq, to_seq=to_seq, since=mark.at, until=started
            )
            reason = (
                f"events {from_seq + 1}..{to_seq}" if vehicle_ids else "no changes since last run"
            )
    say(
        f"materialize: {reason}; {len(vehicle_ids)} vehicles x {days} days from {first_day}"
        + (f", {deleted} rows outside the window dropped" if deleted else "")
    )

    rows = batches = 0
    for number, batch in enumerate(_chunks(vehicle_ids, batch_size), start=1):
        with engine.begin() as conn:
            written = materialize(conn, first_day=first_day, days=days, vehicle_ids=batch)
            deleted += _drop_retired(conn, batch)
        rows += written
        batches += 1
        say(
            f"materialize: batch {number}: {len(batch)} vehicles"
            f" (ids {batch[0]}..{batch[-1]}), {written} rows"
        )

    with engine.begin() as conn:
        _write_watermark(conn, _Watermark(seq=to_seq, first_day=first_day, days=days, at=started))
    return MaterializeSummary(
        full=full,
        reason=reason,
        first_day=first_day,
        days=days,
        vehicles=len(vehicle_ids),
        rows=rows,
        batches=batches,
        deleted_rows=deleted,
        from_seq=from_seq,
        to_seq=to_seq,
    )


def _default_today(conn: Connection) -> date:
    # The earliest local date: at 02:00 UTC it is still yesterday in New York, and that lot's
    # today must stay in the window.
    return conn.execute(
        text(
            "SELECT coalesce(min((now() AT TIME ZONE time_zone)::date),"
            " (now() AT TIME ZONE 'UTC')::date) FROM locations"
        )
    ).scalar_one()


def _read_watermark(conn: Connection) -> _Watermark | None:
    value = conn.execute(
        text("SELECT value FROM pipeline_state WHERE name = :n"), {"n": STATE_NAME}
    ).scalar()
    if value is None:
        return None
    try:
        return _Watermark.model_validate(value)
    except ValueError:
        # A watermark this code cannot read is treated as none: the run rebuilds everything.
        return None


def _write_watermark(conn: Connection, mark: _Watermark) -> None:
    conn.execute(
        text(
            "INSERT INTO pipeline_state (name, value, updated_at)"
            " VALUES (:n, CAST(:v AS jsonb), now())"
            " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
        ),
        {"n": STATE_NAME, "v": to_json(mark.model_dump(mode="json"))},
    )


def _active_vehicles(conn: Connection) -> list[int]:
    return list(conn.execute(text("SELECT id FROM vehicles WHERE active ORDER BY id")).scalars())


def _changed_vehicles(
    conn: Connection, *, from_seq: int, to_seq: int, since: datetime, until: datetime
) -> list[int]:
    return list(
        conn.execute(
            text(
                "SELECT vehicle_id FROM availability_events"
                " WHERE seq > :from_seq AND seq <= :to_seq AND vehicle_id IS NOT NULL"
                " UNION"
                # Holds run out without an event; the previous run still counted these.
                " SELECT vehicle_id FROM blocks"
                " WHERE kind = 'hold' AND expires_at > :since AND expires_at <= :until"
                " ORDER BY 1"
            ),
            {"from_seq": from_seq, "to_seq": to_seq, "since": since, "until": until},
        ).scalars()
    )


def _drop_outside_window(conn: Connection, *, first_day: date, days: int) -> int:
    return conn.execute(
        text(
            "DELETE FROM availability_cache WHERE day < :first OR day >= :end"
            " OR vehicle_id IN (SELECT id FROM vehicles WHERE NOT active)"
        ),
        {"first": first_day, "end": first_day + timedelta(days=days)},
    ).rowcount


def _drop_retired(conn: Connection, vehicle_ids: list[int]) -> int:
    # materialize() writes active vehicles only; a car retired since keeps no stale rows.
    return conn.execute(
        text(
            "DELETE FROM availability_cache WHERE vehicle_id = ANY(:ids)"
            " AND vehicle_id IN (SELECT id FROM vehicles WHERE NOT active)"
        ),
        {"ids": vehicle_ids},
    ).rowcount


def _chunks(items: Sequence[int], size: int) -> list[list[int]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
