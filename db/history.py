"""History archiving, engine side: which old rows to move, reading them, deleting them once saved.

The status log and the events outbox grow forever; rows older than the retention move to
Parquet (see pipeline/archive.py, which owns the files and the transactions). Months are
calendar months in UTC. Nothing here commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import Connection, text

from db.errors import InvalidInput
from db.timeutil import require_aware

# Held for a whole archive run: a second run would take the first one's new, not yet recorded
# file for an orphan and remove it just before the first one's delete commits.
ARCHIVE_LOCK = 7340041

# Table and column names in the SQL below come from TABLES, never from input (hence the
# S608 exemptions); every value is a bound parameter.

# Column kinds: how each is selected from PostgreSQL and typed in Parquet and DuckDB.
BIGINT, TEXT, JSON, TIMESTAMPTZ = "bigint", "text", "json", "timestamptz"


@dataclass(frozen=True)
class HistoryTable:
    """One archivable table: its columns in order, its time column, and what may move."""

    name: str
    time_column: str
    columns: tuple[tuple[str, str], ...]
    # Extra condition a row must meet to be archived (beyond being old enough).
    only: str = ""

    def select_list(self) -> str:
        """Return the SELECT list giving each column in its archived form."""
        return ", ".join(
            f"{_SELECT.get((self.name, c)) or _KIND_SELECT[k].format(c=c)} AS {c}"
            for c, k in self.columns
        )


_KIND_SELECT = {BIGINT: "{c}", TEXT: "{c}", TIMESTAMPTZ: "{c}", JSON: "CAST({c} AS text)"}

# A rollback is linked to the change it reverts by reverts_log_id, and rollback_change also
# writes {"reverts": id, "reverted_status": ...} into its metadata. When the reverted change
# moves to the archive first, the foreign key's ON DELETE SET NULL clears the column in
# PostgreSQL; the metadata copy is what still says which change was reverted, so the archive
# (and the DuckDB view over live rows, see pipeline/analytics.py) restore the link from it.
RESTORED_REVERTS = (
    "coalesce(reverts_log_id, CASE WHEN metadata ? 'reverted_status'"
    " AND metadata ->> 'reverts' ~ '^[0-9]{1,18}$' THEN CAST(metadata ->> 'reverts' AS bigint) END)"
)

_SELECT = {
    ("vehicle_status_log", "reverts_log_id"): RESTORED_REVERTS,
    # xid8 has no cast to bigint; it is a 64-bit number, and its text form is that number.
    ("availability_events", "tx_id"): "CAST(CAST(tx_id AS text) AS bigint)",
}

TABLES: dict[str, HistoryTable] = {
    "vehicle_status_log": HistoryTable(
        name="vehicle_status_log",
        time_column="changed_at",
        columns=(
            ("id", BIGINT),
            ("vehicle_id", BIGINT),
            ("old_status", TEXT),
            ("new_status", TEXT),
            ("old_location_id", BIGINT),
            ("new_location_id", BIGINT),
            ("old_state", JSON),
            ("new_state", JSON),
            ("version", BIGINT),
            ("changed_by", BIGINT),
            ("change_reason", TEXT),
            ("source", TEXT),
            ("metadata", JSON),
            ("reverts_log_id", BIGINT),
            ("changed_at", TIMESTAMPTZ),
        ),
    ),
    "availability_events": HistoryTable(
        name="availability_events",
        time_column="created_at",
        columns=(
            ("id", BIGINT),
            ("tx_id", BIGINT),
            ("kind", TEXT),
            ("vehicle_id", BIGINT),
            ("location_id", BIGINT),
            ("actor_id", BIGINT),
            ("payload", JSON),
            ("created_at", TIMESTAMPTZ),
            ("seq", BIGINT),
        ),
        # seq is given at commit; an event without one belongs to a transaction still open,
        # and the live stream has not handed it out yet.
        only=" AND seq IS NOT NULL",
    ),
}


def history_table(name: str) -> HistoryTable:
    """Return the archivable table of that name, or raise InvalidInput naming the choices."""
    try:
        return TABLES[name]
    except KeyError:
        raise InvalidInput(
            f"{name!r} is not an archivable table",
            field="table_name",
            hint=f"one of {', '.join(TABLES)}",
        ) from None


def month_bounds(month: date, cutoff: datetime) -> tuple[datetime, datetime]:
    """Return the [start, end) of what is archived of one UTC month: up to the cutoff at most."""
    require_aware(cutoff, "cutoff")
    if month.day != 1:
        raise InvalidInput(f"a month starts on day 1, not {month.isoformat()}", field="month")
    start = datetime.combine(month, time(), tzinfo=UTC)
    following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return start, min(datetime.combine(following, time(), tzinfo=UTC), cutoff)


def _where(t: HistoryTable) -> str:
    return f"{t.time_column} >= :start AND {t.time_column} < :end{t.only}"


def archivable_months(conn: Connection, *, table: str, cutoff: datetime) -> list[date]:
    """Return the UTC months that have rows older than the cutoff, oldest first."""
    t = history_table(table)
    require_aware(cutoff, "cutoff")
    rows = conn.execute(
        text(
            f"SELECT DISTINCT CAST(date_trunc('month', {t.time_column}, 'UTC') AT TIME ZONE 'UTC'"  # noqa: S608
            f" AS date) AS month FROM {t.name} WHERE {t.time_column} < :cutoff{t.only}"
            " ORDER BY month"
        ),
        {"cutoff": cutoff},
    ).scalars()
    return list(rows)


def fetch_batch(
    conn: Connection,
    *,
    table: str,
    month: date,
    cutoff: datetime,
    after_id: int = 0,
    limit: int = 100_000,
) -> list[dict[str, Any]]:
    """Return up to `limit` rows of the month's selection with id > after_id, in id order.

    JSON columns come as JSON text; the caller walks a big month batch by batch.
    """
    t = history_table(table)
    start, end = month_bounds(month, cutoff)
    rows = conn.execute(
        text(
            f"SELECT {t.select_list()} FROM {t.name} WHERE {_where(t)}"  # noqa: S608
            " AND id > :after ORDER BY id LIMIT :limit"
        ),
        {"start": start, "end": end, "after": after_id, "limit": limit},
    ).mappings()
    return [dict(r) for r in rows]


def selection_stats(
    conn: Connection, *, table: str, month: date, cutoff: datetime, min_id: int, max_id: int
) -> tuple[int, int | None, int | None]:
    """Return (count, min id, max id) of the month's selection within [min_id, max_id]."""
    t = history_table(table)
    start, end = month_bounds(month, cutoff)
    row = conn.execute(
        text(
            f"SELECT count(*) AS n, min(id) AS lo, max(id) AS hi FROM {t.name}"  # noqa: S608
            f" WHERE {_where(t)} AND id BETWEEN :lo AND :hi"
        ),
        {"start": start, "end": end, "lo": min_id, "hi": max_id},
    ).one()
    return row.n, row.lo, row.hi


def delete_archived(
    conn: Connection, *, table: str, month: date, cutoff: datetime, min_id: int, max_id: int
) -> int:
    """Delete the month's selection within [min_id, max_id] and return how many rows went.

    The same bounds as the read: a row that was not part of it (a newer one, an event
    without seq) is never matched; the caller compares the count with the file's.
    """
    t = history_table(table)
    start, end = month_bounds(month, cutoff)
    return conn.execute(
        text(
            f"DELETE FROM {t.name} WHERE {_where(t)} AND id BETWEEN :lo AND :hi"  # noqa: S608
        ),
        {"start": start, "end": end, "lo": min_id, "hi": max_id},
    ).rowcount


@dataclass(frozen=True)
class ArchiveRecord:
    """One verified archive file as history_archives remembers it."""

    id: int
    table_name: str
    month: date
    path: str
    row_count: int
    min_id: int | None
    max_id: int | None
    sha256: str
    archived_at: datetime


def record_archive(
    conn: Connection,
    *,
    table: str,
    month: date,
    path: str,
    row_count: int,
    min_id: int | None,
    max_id: int | None,
    sha256: str,
) -> int:
    """Remember a verified archive file (path relative to the archive folder); return its id."""
    history_table(table)
    return conn.execute(
        text(
            "INSERT INTO history_archives (table_name, month, path, row_count, min_id, max_id,"
            " sha256) VALUES (:t, :month, :path, :n, :lo, :hi, :sha) RETURNING id"
        ),
        {
            "t": table,
            "month": month,
            "path": path,
            "n": row_count,
            "lo": min_id,
            "hi": max_id,
            "sha": sha256,
        },
    ).scalar_one()


def list_archives(conn: Connection, *, table: str | None = None) -> list[ArchiveRecord]:
    """Return the recorded archive files, by table, month and first id."""
    if table is not None:
        history_table(table)
    rows = conn.execute(
        text(
            "SELECT id, table_name, month, path, row_count, min_id, max_id, sha256, archived_at"
            " FROM history_archives WHERE (CAST(:t AS text) IS NULL OR table_name = :t)"
            " ORDER BY table_name, month, min_id"
        ),
        {"t": table},
    ).mappings()
    return [ArchiveRecord(**r) for r in rows]


def try_lock_archiver(conn: Connection) -> bool:
    """Take the session-level archive lock if free; hold this connection for the run."""
    return conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ARCHIVE_LOCK}).scalar_one()


def unlock_archiver(conn: Connection) -> None:
    """Release the archive lock taken by try_lock_archiver on this connection."""
    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ARCHIVE_LOCK})


def count_archivable(conn: Connection, *, table: str, cutoff: datetime) -> int:
    """Return how many rows of the table are old enough to archive."""
    t = history_table(table)
    require_aware(cutoff, "cutoff")
    return conn.execute(
        text(f"SELECT count(*) FROM {t.name} WHERE {t.time_column} < :cutoff{t.only}"),  # noqa: S608
        {"cutoff": cutoff},
    ).scalar_one()
