"""Run Alembic migrations, the only source of the schema, against a connection."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """Build an Alembic config pointing at our migrations, optionally bound to a connection."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Migrate the database up to revision."""
    command.upgrade(alembic_config(connection), revision)


def downgrade(connection: Connection, revision: str = "-1") -> None:
    """Migrate the database down to revision."""
    command.downgrade(alembic_config(connection), revision)


def heads() -> list[str]:
    """Return the head revisions of the migration scripts."""
    return list(ScriptDirectory.from_config(alembic_config()).get_heads())


def current(connection: Connection) -> str | None:
    """Return the revision the database is at, or None when unmigrated."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
