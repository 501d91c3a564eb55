"""`fleet analytics` starts light, and says so when the database is not migrated yet."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from db.database import make_engine
from fleet.cli.main import app
from fleet.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pandas", "polars", "prefect", "duckdb", "numpy", "pyarrow", "alembic")

# What `fleet analytics --help` imports, in a fresh interpreter: the entry point resolves
# only the command asked for.
SNIPPET = """
import sys
from fleet.cli.main import app
try:
    app(["analytics", "--help"])
except SystemExit:
    pass
heavy = {n.split(".")[0] for n in sys.modules} & set(sys.argv[1].split(","))
print("heavy:", ",".join(sorted(heavy)))
"""


def test_analytics_help_imports_no_heavy_module():
    out = subprocess.run(
        [sys.executable, "-c", SNIPPET, ",".join(HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "--query" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "heavy:"


def test_the_cli_module_imports_no_heavy_module():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, fleet.cli.main, fleet.cli.analytics;"
            " print(sorted({n.split('.')[0] for n in sys.modules} & set(sys.argv[1:])))",
            *HEAVY,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]"


@pytest.fixture
def unmigrated_url(server_url: str) -> Iterator[str]:
    """A fresh, empty database on the test server: no `fleet db upgrade` yet."""
    name = f"fleet_unmigrated_{secrets.token_hex(4)}"
    admin = make_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=None)
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_unmigrated_database_says_run_db_upgrade(unmigrated_url, monkeypatch, tmp_path):
    monkeypatch.setenv("FLEET_DATABASE_URL", unmigrated_url)
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(app, ["analytics", "--query", "select 1"])
    finally:
        get_settings.cache_clear()
    said = " ".join(r.stderr.split())
    assert r.exit_code == 3, r.output
    assert "not migrated" in said and "fleet db upgrade" in said
    assert "Traceback" not in r.output and "does not exist" not in said
    assert r.exception is None or isinstance(r.exception, SystemExit)
