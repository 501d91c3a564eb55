"""DuckDB for analysts: the live PostgreSQL history, and later its Parquet archive, in one place."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
from sqlalchemy.engine import make_url

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


def connect(*, postgres_url: str, extension_directory: Path) -> duckdb.DuckDBPyConnection:
    """Open an in-memory DuckDB with the fleet database attached read-only as `pg`.

    Views in the `fleet` schema name what analysts ask about; `status_history` is the status
    log (archived Parquet months join it when the pipeline's archive exists).
    """
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
    for name, source in _VIEWS.items():
        con.execute(f"CREATE VIEW fleet.{name} AS {source}")
    return con


_VIEWS = {
    "status_history": "SELECT * FROM pg.public.vehicle_status_log",
    "events": "SELECT * FROM pg.public.availability_events",
    "vehicles": "SELECT * FROM pg.public.vehicles",
    "locations": "SELECT * FROM pg.public.locations",
    "categories": "SELECT * FROM pg.public.vehicle_categories",
    "users": "SELECT id, username, full_name, role, home_location_id FROM pg.public.users",
}
