"""DuckDB for analysts: the live PostgreSQL history and its Parquet archive, in one place."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
from sqlalchemy.engine import make_url

from db import history
from fleet.settings import get_settings

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
