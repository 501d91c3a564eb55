"""Database selection: the configured server wins; otherwise the embedded one."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from db.database import ensure_database, make_engine, resolve_url, sqlalchemy_url


def test_plain_postgres_urls_get_the_psycopg_driver():
    assert sqlalchemy_url("postgresql://u@h/db").startswith("postgresql+psycopg://")
    assert sqlalchemy_url("postgres://u@h/db").startswith("postgresql+psycopg://")


def test_other_databases_are_refused_with_a_hint():
    with pytest.raises(ValueError, match="use postgresql://"):
        sqlalchemy_url("mysql://u@h/db")


def test_configured_url_is_used_as_given(tmp_path):
    url = resolve_url("postgresql://fleet@db.example/fleet", tmp_path)
    assert make_url(url).host == "db.example"
    assert not (tmp_path / "pg").exists()  # no embedded server was started


def test_ensure_database_creates_once(server_url):
    ensure_database(server_url, "fleet_ensure_check")
    ensure_database(server_url, "fleet_ensure_check")  # second call is a no-op
    admin = make_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        n = c.execute(
            text("SELECT count(*) FROM pg_database WHERE datname = 'fleet_ensure_check'")
        ).scalar()
        c.execute(text("DROP DATABASE fleet_ensure_check"))
    admin.dispose()
    assert n == 1
