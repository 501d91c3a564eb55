"""The history archive: status log and event rows older than the retention move to Parquet.

Layout: `<archive_dir>/<table>/month=YYYY-MM/part-<first id>-<last id>.parquet` (hive style,
so DuckDB reads `month` as a column); months are UTC calendar months. Each part file holds
one batch of one month, in id order, and is recorded in `history_archives`.

Nothing is lost and nothing is counted twice, whatever fails where:

1. The batch is read from PostgreSQL and written to a hidden temp file, fsynced, renamed to
   its final name (the directory fsynced too), then read back: its ids must be exactly the
   batch's, and PostgreSQL must still hold that many rows, with those min/max ids, for the
   month's selection in that id range.
2. One transaction deletes those rows (by id range AND the month/cutoff bounds, so a newer
   row or an uncommitted event in the range is never matched), checks that exactly as many
   went as the file holds (else it rolls back and raises), and inserts the file's
   `history_archives` row. The delete and the record commit together or not at all.
3. So a part file counts only if `history_archives` names it. A file whose transaction did
   not commit is an orphan: its rows are all still in PostgreSQL. The run that failed removes
   it at once if it can tell the record is missing; if it cannot (the database went away
   mid-commit), it leaves it, and every run first removes the orphans left before it (under
   the archive lock, so never a file another run is about to commit), and the DuckDB views
   read only recorded files meanwhile (pipeline/analytics.py). A rerun then archives the
   rows again into a fresh part file: no duplicates, no gaps.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine, text

from db import history
from db.errors import FleetError, InvalidInput
from db.timeutil import require_aware

_POLARS_TYPES: dict[str, pl.DataType] = {
    history.BIGINT: pl.Int64(),
    history.TEXT: pl.String(),
    # Stored as the JSON text PostgreSQL gives; DuckDB casts it back to JSON.
    history.JSON: pl.String(),
    history.TIMESTAMPTZ: pl.Datetime("us", "UTC"),
}


class ArchiveError(FleetError):
    """An archive step failed its check; the rows it concerns are still in PostgreSQL."""

    code = "archive_failed"


class ArchiveBusy(FleetError):
    """Another archive run holds the lock."""

    code = "archive_busy"


@dataclass(frozen=True)
class ArchivePart:
    """One written and verified part file, before its rows are deleted from PostgreSQL."""

    table: str
    month: date
    path: Path
    relative: str  # as recorded in history_archives: relative to the archive folder
    row_count: int
    min_id: int
    max_id: int
    sha256: str


@dataclass
class MonthArchive:
    """What one run did for one table and month."""

    table: str
    month: date
    rows_archived: int = 0
    files_written: int = 0
    rows_deleted: int = 0
    paths: list[str] = field(default_factory=list)


# How a log sentence names the rows of each history table.
_ROW_NOUNS = {"vehicle_status_log": "status changes", "availability_events": "events"}


@dataclass
class ArchiveSummary:
    """What one archive run did: per table and month, plus orphans it cleared away."""

    cutoff: datetime
    months: list[MonthArchive] = field(default_factory=list)
    orphans_removed: list[str] = field(default_factory=list)

    @property
    def rows_archived(self) -> int:
        """Rows written to verified files in this run."""
        return sum(m.rows_archived for m in self.months)

    @property
    def rows_deleted(self) -> int:
        """Rows deleted from PostgreSQL in this run (equal to rows_archived)."""
        return sum(m.rows_deleted for m in self.months)

    @property
    def files_written(self) -> int:
        """Part files written and recorded in this run."""
        return sum(m.files_written for m in self.months)

    def describe(self) -> str:
        """Say what the run did in a sentence, for the flow's log.

        "archived 75,525 status changes of 2025-12 to 2026-09 into 13 files"
        """
        if not self.months and not self.orphans_removed:
            return f"nothing older than {self.cutoff:%Y-%m-%d} to archive"
        parts: list[str] = []
        for table in dict.fromkeys(m.table for m in self.months):
            done = [m for m in self.months if m.table == table]
            rows = sum(m.rows_archived for m in done)
            files = sum(m.files_written for m in done)
            first, last = min(m.month for m in done), max(m.month for m in done)
            span = f"{first:%Y-%m}" if first == last else f"{first:%Y-%m} to {last:%Y-%m}"
            parts.append(
                f"{rows:,} {_ROW_NOUNS.get(table, table + ' rows')} of {span}"
                f" into {files:,} file{'' if files == 1 else 's'}"
            )
        text = "archived " + "; ".join(parts) if parts else "archived nothing new"
        if self.orphans_removed:
            n = len(self.orphans_removed)
            text += f"; removed {n} unrecorded part file{'' if n == 1 else 's'}"
        return text

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as plain data for JSON output and flow results."""
        return {
            "cutoff": self.cutoff.isoformat(),
            "rows_archived": self.rows_archived,
            "rows_deleted": self.rows_deleted,
            "files_written": self.files_written,
            "orphans_removed": list(self.orphans_removed),
            "months": [
                {
                    "table": m.table,
                    "month": m.month.strftime("%Y-%m"),
                    "rows_archived": m.rows_archived,
                    "files_written": m.files_written,
                    "rows_deleted": m.rows_deleted,
                    "paths": list(m.paths),
                }
                for m in self.months
            ],
        }


def archive_history(
    engine: Engine,
    *,
    archive_dir: Path,
    retention_days: int = 90,
    now: datetime | None = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 100_000,
    before_delete: Callable[[ArchivePart], None] | None = None,
) -> ArchiveSummary:
    """Move status log and event rows older than `retention_days` to Parquet, month by month.

    `progress(done, total)` counts rows; `before_delete` runs inside each delete transaction
    just before the delete (a hook for checks, and for tests to inject a failure there).
    Raises ArchiveBusy when another run is under way, ArchiveError when a check fails.
    """
    if retention_days < 1:
        raise InvalidInput(
            f"retention_days must be at least 1, not {retention_days}",
            field="retention_days",
            hint="history younger than this stays in PostgreSQL; the default is 90",
        )
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be at least 1, not {batch_size}", field="batch_size")
    archive_dir = Path(archive_dir).expanduser().absolute()
    if archive_dir.exists() and not archive_dir.is_dir():
        raise InvalidInput(
            f"the archive folder {archive_dir} is a file",
            field="archive_dir",
            hint="point the archive at a folder (FLEET_ARCHIVE_DIR)",
        )
    say = log or (lambda message: None)
    tick = progress or (lambda done, total: None)

    with engine.connect() as lock_conn:
        lock_conn = lock_conn.execution_options(isolation_level="AUTOCOMMIT")
        if now is None:
            now = lock_conn.execute(text("SELECT now()")).scalar_one()
        require_aware(now, "now")
        cutoff = now - timedelta(days=retention_days)
        if not history.try_lock_archiver(lock_conn):
            raise ArchiveBusy(
                "another archive run is under way",
                hint="wait for it to finish; runs never overlap",
            )
        try:
            summary = ArchiveSummary(cutoff=cutoff)
            summary.orphans_removed = _remove_orphans(engine, archive_dir, say)
            with engine.connect() as c:
                months = {
                    t: history.archivable_months(c, table=t, cutoff=cutoff) for t in history.TABLES
                }
                total = sum(
                    history.count_archivable(c, table=t, cutoff=cutoff) for t in history.TABLES
                )
            done = 0
            tick(done, total)
            for table, table_months in months.items():
                for month in table_months:
                    result = MonthArchive(table=table, month=month)
                    summary.months.append(result)
                    for part in _month_parts(
                        engine,
                        archive_dir,
                        table=table,
                        month=month,
                        cutoff=cutoff,
                        batch_size=batch_size,
                        before_delete=before_delete,
                    ):
                        result.rows_archived += part.row_count
                        result.rows_deleted += part.row_count
                        result.files_written += 1
                        result.paths.append(part.relative)
                        done += part.row_count
                        tick(done, max(total, done))
                        say(f"{table} {month:%Y-%m}: {part.row_count} rows → {part.relative}")
            return summary
        finally:
            try:
                history.unlock_archiver(lock_conn)
            except Exception:
                # A session lock outlives a failed unlock on a pooled connection; closing the
                # connection for good is what releases it.
                lock_conn.invalidate()


def _month_parts(
    engine: Engine,
    archive_dir: Path,
    *,
    table: str,
    month: date,
    cutoff: datetime,
    batch_size: int,
    before_delete: Callable[[ArchivePart], None] | None,
) -> Iterator[ArchivePart]:
    """Archive one month batch by batch, yielding each part once its delete has committed."""
    after = 0
    while True:
        with engine.connect() as c:
            rows = history.fetch_batch(
                c, table=table, month=month, cutoff=cutoff, after_id=after, limit=batch_size
            )
        if not rows:
            return
        part = _write_part(archive_dir, table=table, month=month, rows=rows)
        try:
            with engine.begin() as c:
                n, lo, hi = history.selection_stats(
                    c,
                    table=table,
                    month=month,
                    cutoff=cutoff,
                    min_id=part.min_id,
                    max_id=part.max_id,
                )
                if (n, lo, hi) != (part.row_count, part.min_id, part.max_id):
                    raise ArchiveError(
                        f"{table} {month:%Y-%m} changed while it was archived: the file holds"
                        f" {part.row_count} rows (ids {part.min_id}-{part.max_id}), PostgreSQL"
                        f" now has {n} (ids {lo}-{hi}); nothing was deleted",
                        hint="run the archive again; it picks up the rows as they are now",
                    )
                if before_delete is not None:
                    before_delete(part)
                deleted = history.delete_archived(
                    c,
                    table=table,
                    month=month,
                    cutoff=cutoff,
                    min_id=part.min_id,
                    max_id=part.max_id,
                )
                if deleted != part.row_count:
                    # Leaving the block by raising rolls the delete back.
                    raise ArchiveError(
                        f"{table} {month:%Y-%m}: the delete matched {deleted} rows but the file"
                        f" holds {part.row_count} (ids {part.min_id}-{part.max_id}); rolled"
                        " back, nothing was deleted",
                        hint="rows changed during the run; run the archive again",
                    )
                history.record_archive(
                    c,
                    table=table,
                    month=month,
                    path=part.relative,
                    row_count=part.row_count,
                    min_id=part.min_id,
                    max_id=part.max_id,
                    sha256=part.sha256,
                )
        except BaseException:
            _discard_unless_recorded(engine, part)
            raise
        yield part
        after = part.max_id


def _write_part(
    archive_dir: Path, *, table: str, month: date, rows: list[dict[str, Any]]
) -> ArchivePart:
    """Write one batch to its part file (temp name, fsync, rename) and verify it by reading."""
    spec = history.history_table(table)
    first, last = rows[0]["id"], rows[-1]["id"]
    folder = archive_dir / table / f"month={month:%Y-%m}"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"part-{first}-{last}.parquet"
    temp = folder / f".part-{first}-{last}.parquet.tmp"
    if final.exists():
        # Orphans are removed before any batch is read, and recorded files hold rows that
        # are gone from PostgreSQL: a file here means the archive and the database disagree.
        raise ArchiveError(
            f"{final} already exists but its rows are still in PostgreSQL",
            hint="check history_archives for this path; move the file away if it is unrecorded",
        )
    columns = {
        name: [_utc(r[name]) if kind == history.TIMESTAMPTZ else r[name] for r in rows]
        for name, kind in spec.columns
    }
    frame = pl.DataFrame(columns, schema={n: _POLARS_TYPES[k] for n, k in spec.columns})
    try:
        frame.write_parquet(temp, compression="zstd", statistics=True)
        _fsync(temp)
        os.replace(temp, final)
        _fsync(folder)
    finally:
        temp.unlink(missing_ok=True)
    try:
        ids = pl.read_parquet(final, columns=["id"])["id"].to_list()
        expected = [r["id"] for r in rows]
        if ids != expected:
            raise ArchiveError(
                f"{final} reads back {len(ids)} rows but {len(expected)} were written"
                f" (ids {ids[:1]}..{ids[-1:]} vs {first}..{last})",
                hint="check the archive disk; the rows are still in PostgreSQL",
            )
        digest = _sha256(final)
    except BaseException:
        final.unlink(missing_ok=True)
        raise
    return ArchivePart(
        table=table,
        month=month,
        path=final,
        relative=final.relative_to(archive_dir).as_posix(),
        row_count=len(rows),
        min_id=first,
        max_id=last,
        sha256=digest,
    )


def _discard_unless_recorded(engine: Engine, part: ArchivePart) -> None:
    """Remove a part file whose transaction failed, unless it did commit after all."""
    try:
        with engine.connect() as c:
            recorded = any(
                r.path == part.relative for r in history.list_archives(c, table=part.table)
            )
    except Exception:
        # Cannot tell whether the commit went through: keep the file. The next run decides
        # by history_archives, and readers ignore it unless it is recorded.
        return
    if not recorded:
        part.path.unlink(missing_ok=True)


def _remove_orphans(engine: Engine, archive_dir: Path, say: Callable[[str], None]) -> list[str]:
    """Remove part and temp files no history_archives row names; return their paths."""
    removed: list[str] = []
    with engine.connect() as c:
        recorded = {r.path for r in history.list_archives(c)}
    for table in history.TABLES:
        folder = archive_dir / table
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("month=*/*.parquet")) + sorted(
            folder.glob("month=*/.*.tmp")
        ):
            relative = path.relative_to(archive_dir).as_posix()
            if relative in recorded:
                continue
            # Its delete never committed, so its rows are still in PostgreSQL (see above).
            path.unlink(missing_ok=True)
            removed.append(relative)
            say(f"removed {relative}: its rows were never deleted from PostgreSQL")
    missing = sorted(p for p in recorded if not (archive_dir / p).exists())
    for relative in missing:
        say(f"warning: recorded archive file {relative} is missing from {archive_dir}")
    return removed


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
