"""DuckDB for analysts: the live PostgreSQL history and its Parquet archive, in one place."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import duckdb
from sqlalchemy.engine import make_url

from db import history
from db.errors import InvalidInput
from db.status import STATUSES
from db.timeutil import MAX_PERIOD, require_aware
from fleet.settings import Settings, get_settings

if TYPE_CHECKING:
    # pandas (0.25 s to import) serves only the dashboard's frames below; `fleet analytics`
    # never needs it.
    import pandas as pd

log = logging.getLogger("fleet.analytics")

# DuckDB cannot download extensions here; the PyPI wheel duckdb-extension-postgres carries
# the binary. It must sit where DuckDB looks for a known extension, under the name of the
# extension's entry point (postgres_scanner): loading the file by its own path fails.
_EXTENSION_NAME = "postgres_scanner.duckdb_extension"


def install_postgres_extension(extension_directory: Path) -> Path:
    """Copy the packaged postgres extension where DuckDB loads it from; return its path."""
    import duckdb_extension_postgres

    source = next(
        Path(duckdb_extension_postgres.__file__).parent.glob(
            "extensions/*/postgres.duckdb_extension"
        )
    )
    platform = duckdb.execute("PRAGMA platform").fetchone()[0]
    target = extension_directory / f"v{duckdb.__version__}" / platform / _EXTENSION_NAME
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return target


def libpq_dsn(url: str) -> str:
    """Turn a SQLAlchemy/libpq URL into the key=value form DuckDB's postgres extension takes."""
    u = make_url(url)
    parts = {
        "host": u.query.get("host") or u.host,
        "port": u.port,
        "dbname": u.database,
        "user": u.username,
        "password": u.password,
    }
    return " ".join(
        f"{key}={_quote(str(value))}" for key, value in parts.items() if value not in (None, "")
    )


def _quote(value: str) -> str:
    # libpq's key=value syntax: single quotes, with \\ and \' escaped.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def connect(
    *, postgres_url: str, extension_directory: Path, archive_dir: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """Open an in-memory DuckDB with the fleet database attached read-only as `pg`.

    Views in the `fleet` schema name what analysts ask about (docs/analytics.md).
    `status_history` and `events` span the Parquet archive in `archive_dir` (default: the
    settings' archive location) and the live tables, with the same columns and types.
    """
    if archive_dir is None:
        archive_dir = get_settings().archive_location
    install_postgres_extension(extension_directory)
    con = duckdb.connect(
        config={
            "extension_directory": str(extension_directory),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    con.execute("LOAD postgres")
    # ATTACH takes no bound parameters; the DSN is quoted as a SQL string literal.
    dsn = libpq_dsn(postgres_url).replace("'", "''")
    con.execute(f"ATTACH '{dsn}' AS pg (TYPE postgres, READ_ONLY)")
    con.execute("CREATE SCHEMA fleet")
    views = {
        "status_history": history_view("vehicle_status_log", Path(archive_dir)),
        "events": history_view("availability_events", Path(archive_dir)),
        **_VIEWS,
    }
    for name, source in views.items():
        con.execute(f"CREATE VIEW fleet.{name} AS {source}")
    return con


# DuckDB types of the archive's column kinds (db/history.py); both halves of a history view
# cast to them, so archived and live rows look the same.
_DUCKDB_TYPES = {
    history.BIGINT: "BIGINT",
    history.TEXT: "VARCHAR",
    history.JSON: "JSON",
    history.TIMESTAMPTZ: "TIMESTAMPTZ",
}

# The live half restores a rollback's link to an archived change the way the archive does
# (db/history.py, RESTORED_REVERTS): PostgreSQL's ON DELETE SET NULL cleared the column.
_LIVE_COLUMNS = {
    ("vehicle_status_log", "reverts_log_id"): (
        "coalesce(CAST(reverts_log_id AS BIGINT), CASE WHEN json_exists(metadata,"
        " '$.reverted_status') AND regexp_full_match(json_extract_string(metadata, '$.reverts'),"
        " '[0-9]{1,18}') THEN CAST(json_extract_string(metadata, '$.reverts') AS BIGINT) END)"
    ),
}


def history_view(table: str, archive_dir: Path) -> str:
    """Return the SELECT behind a history view: the archived months, then the live table.

    Only part files named in history_archives are read: a file whose delete did not commit
    (pipeline/archive.py) holds rows that are still live, and must not count twice.
    """
    spec = history.history_table(table)
    live = ", ".join(
        f"{_LIVE_COLUMNS.get((table, c), f'CAST({c} AS {_DUCKDB_TYPES[k]})')} AS {c}"
        for c, k in spec.columns
    )
    # Names come from db/history.py's TABLES (history_table refused anything else).
    source = f"SELECT {live} FROM pg.public.{table}"  # noqa: S608
    folder = Path(archive_dir).expanduser().absolute()
    if not any((folder / table).glob("month=*/*.parquet")):
        # read_parquet fails on a glob that matches nothing.
        return source
    archived = ", ".join(f"CAST({c} AS {_DUCKDB_TYPES[k]}) AS {c}" for c, k in spec.columns)
    prefix = _literal(folder.as_posix() + "/")
    files = _literal(f"{folder.as_posix()}/{table}/*/*.parquet")
    return (
        f"SELECT {archived} FROM read_parquet({files}, hive_partitioning = true,"  # noqa: S608
        " union_by_name = true, filename = true)"
        f" WHERE filename IN (SELECT {prefix} || path FROM pg.public.history_archives"
        f" WHERE table_name = '{table}')"
        f" UNION ALL {source}"
    )


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# Blocks keep their periods as ranges, which DuckDB cannot read; PostgreSQL splits them.
_BLOCKS = """SELECT * FROM postgres_query('pg', '
    SELECT id, vehicle_id, category_id, kind, state, lower(period) AS starts_at,
           upper(period) AS ends_at, upper(blocked) AS blocked_until, scheduled_end,
           start_location_id, end_location_id, moves, customer_id, reference, expires_at,
           started_at, finished_at, converted_from, created_by, created_at, updated_at
    FROM public.blocks')"""

_VIEWS = {
    "vehicles": "SELECT * FROM pg.public.vehicles",
    "locations": "SELECT * FROM pg.public.locations",
    "categories": "SELECT * FROM pg.public.vehicle_categories",
    "users": "SELECT id, username, full_name, role, home_location_id FROM pg.public.users",
    "blocks": _BLOCKS,
    "overdue": "SELECT * FROM pg.public.overdue_vehicles",
    "archives": "SELECT * FROM pg.public.history_archives",
}


# --- Utilization and availability over time (the dashboard's Analytics page) ---------------

Granularity = Literal["day", "week"]
GroupBy = Literal["location", "category"]
GRANULARITIES: tuple[str, ...] = get_args(Granularity)
GROUPINGS: tuple[str, ...] = get_args(GroupBy)


@dataclass(frozen=True)
class UsageQuery:
    """One question about vehicle-time: which local days, lot, category, bucket and grouping.

    `first_day` and `last_day` (inclusive) are calendar dates; every lot counts them from
    its own local midnight, so a day in New York starts hours after one in Berlin.
    """

    first_day: date
    last_day: date
    granularity: Granularity = "day"
    by: GroupBy = "location"
    location_id: int | None = None
    category_id: int | None = None

    def __post_init__(self) -> None:
        if self.last_day < self.first_day:
            raise InvalidInput(
                f"the period ends ({self.last_day}) before it starts ({self.first_day})",
                field="last_day",
            )
        if (self.last_day - self.first_day).days + 1 > MAX_PERIOD.days:
            raise InvalidInput(
                f"the period is longer than {MAX_PERIOD.days} days", field="last_day"
            )
        if self.granularity not in GRANULARITIES:
            raise InvalidInput(f"unknown granularity {self.granularity!r}", field="granularity")
        if self.by not in GROUPINGS:
            raise InvalidInput(f"cannot group by {self.by!r}", field="by")


# Each status change lasts until the vehicle's next one (lead over the vehicle's history, in
# the order the changes were made); the last lasts until now. A stretch of time counts at the
# lot the status change names (a rental at its pick-up lot, a transfer at its origin until it
# arrives), falling back to the vehicle's home lot. Stretches are cut at each lot's local
# midnights, so DST days have 23 or 25 hours, and at `now`, so today is counted so far.
_STATUS_HOURS = """
WITH changes AS (
    SELECT h.vehicle_id, h.new_status AS status,
           coalesce(h.new_location_id, v.home_location_id) AS location_id,
           v.category_id, h.changed_at AS since,
           lead(h.changed_at) OVER (PARTITION BY h.vehicle_id ORDER BY h.changed_at, h.id)
               AS next_at
    FROM fleet.status_history h
    JOIN fleet.vehicles v ON v.id = h.vehicle_id
    WHERE h.changed_at < $scan_until
      AND ($category_id IS NULL OR v.category_id = $category_id)
),
stretches AS (
    SELECT vehicle_id, status, location_id, category_id, since,
           coalesce(next_at, $now) AS until
    FROM changes
    WHERE $location_id IS NULL OR location_id = $location_id
),
days AS (
    SELECT l.id AS location_id, CAST(d AS DATE) AS day,
           timezone(l.time_zone, d) AS day_start,
           least(timezone(l.time_zone, d + INTERVAL 1 DAY), $now) AS day_end
    FROM fleet.locations l
    CROSS JOIN generate_series(CAST($first_day AS TIMESTAMP), CAST($last_day AS TIMESTAMP),
                               INTERVAL 1 DAY) AS t(d)
    WHERE $location_id IS NULL OR l.id = $location_id
),
pieces AS (
    SELECT CASE WHEN $granularity = 'week' THEN CAST(date_trunc('week', d.day) AS DATE)
                ELSE d.day END AS period,
           CASE WHEN $by = 'category' THEN s.category_id ELSE s.location_id END AS group_id,
           s.status,
           epoch(least(s.until, d.day_end) - greatest(s.since, d.day_start)) / 3600 AS hours
    FROM stretches s
    JOIN days d ON d.location_id = s.location_id
               AND s.since < d.day_end AND s.until > d.day_start
),
totals AS (
    SELECT period, group_id, status, sum(hours) AS hours
    FROM pieces
    GROUP BY ALL
    -- changes made at the same instant leave stretches of no length: nothing to share out
    HAVING sum(hours) > 0
)
SELECT t.period,
       CASE WHEN $by = 'category' THEN c.code ELSE l.code END AS "group",
       t.status, t.hours,
       t.hours / sum(t.hours) OVER (PARTITION BY t.period, t.group_id) AS share
FROM totals t
LEFT JOIN fleet.locations l ON $by = 'location' AND l.id = t.group_id
LEFT JOIN fleet.categories c ON $by = 'category' AND c.id = t.group_id
ORDER BY t.period, "group", t.status
"""


def status_hours(
    con: duckdb.DuckDBPyConnection, query: UsageQuery, *, now: datetime | None = None
) -> pd.DataFrame:
    """Return vehicle-hours per period, group and status, and each status's share of the group.

    Columns: `period` (first local day of the bucket), `group` (a location or category
    code), `status`, `hours`, `share` (of the group's vehicle-hours in that period).
    Time after `now` (default: the clock) is not counted.
    """
    import pandas as pd

    now = require_aware(now or datetime.now(UTC), "now")
    # Every lot's days lie within a day either side of UTC's, so changes made later than two
    # days after the last day cannot touch the period; bounding the scan lets PostgreSQL skip
    # them.
    scan_until = datetime.combine(query.last_day + timedelta(days=2), datetime.min.time(), UTC)
    frame = con.execute(
        _STATUS_HOURS,
        {
            "first_day": query.first_day,
            "last_day": query.last_day,
            "granularity": query.granularity,
            "by": query.by,
            "location_id": query.location_id,
            "category_id": query.category_id,
            "now": now,
            "scan_until": scan_until,
        },
    ).df()
    frame["period"] = pd.to_datetime(frame["period"]).dt.date
    return frame


def usage_table(hours: pd.DataFrame) -> pd.DataFrame:
    """Pivot `status_hours` to one row per period and group: hours per status, the shares.

    Columns: `period`, `group`, `vehicle_hours`, one `<status>_hours` column per status (in
    db.status.STATUSES order), `utilization` (share of vehicle-time rented) and
    `availability` (share available).
    """
    import pandas as pd

    status_columns = [f"{s}_hours" for s in STATUSES]
    if hours.empty:
        return pd.DataFrame(
            columns=[
                "period",
                "group",
                "vehicle_hours",
                *status_columns,
                "utilization",
                "availability",
            ]
        )
    wide = hours.pivot_table(
        index=["period", "group"], columns="status", values="hours", aggfunc="sum", fill_value=0.0
    ).reindex(columns=list(STATUSES), fill_value=0.0)
    wide.columns = status_columns
    wide.insert(0, "vehicle_hours", wide.sum(axis=1))
    wide["utilization"] = wide["rented_hours"] / wide["vehicle_hours"]
    wide["availability"] = wide["available_hours"] / wide["vehicle_hours"]
    return wide.reset_index().rename_axis(None, axis=1)


def hours_by_status(hours: pd.DataFrame) -> pd.DataFrame:
    """Sum `status_hours` over the groups: one row per period, one column per status."""
    import pandas as pd

    if hours.empty:
        return pd.DataFrame(columns=["period", *STATUSES])
    wide = hours.pivot_table(
        index="period", columns="status", values="hours", aggfunc="sum", fill_value=0.0
    ).reindex(columns=list(STATUSES), fill_value=0.0)
    return wide.reset_index().rename_axis(None, axis=1)


def extension_directory(settings: Settings) -> Path:
    """Return where DuckDB keeps the postgres extension for this installation."""
    return settings.data_dir / "duckdb-extensions"


# Pages run queries from worker threads: two first runs must not copy the extension over
# each other while one of them is loading it.
_connect_lock = threading.Lock()


def fetch_status_hours(
    query: UsageQuery, *, postgres_url: str, settings: Settings, now: datetime | None = None
) -> pd.DataFrame:
    """Open DuckDB over the fleet and its archive, answer `status_hours`, and close it again.

    Blocking: call it off the event loop (asyncio.to_thread).
    """
    started = time.monotonic()
    with _connect_lock:
        con = connect(
            postgres_url=postgres_url,
            extension_directory=extension_directory(settings),
            archive_dir=settings.archive_location,
        )
    try:
        opened = time.monotonic()
        hours = status_hours(con, query, now=now)
    finally:
        con.close()
    log.info(
        "status hours %s to %s: %s rows (DuckDB opened in %.2f s, query %.2f s)",
        query.first_day,
        query.last_day,
        len(hours),
        opened - started,
        time.monotonic() - opened,
    )
    return hours
