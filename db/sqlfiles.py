"""Load the long queries kept as .sql files under db/sql, by name."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from sqlalchemy import TextClause, text

SQL_DIR = Path(__file__).resolve().parent / "sql"


@cache
def query(name: str) -> TextClause:
    """Return db/sql/<name>.sql as a SQLAlchemy text clause (bound parameters only)."""
    return text((SQL_DIR / f"{name}.sql").read_text())
