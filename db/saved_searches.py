"""Saved searches: each user's named availability filters, for the queries they run daily."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, text

from db.errors import InvalidInput, NotFound
from db.events import to_json

ALLOWED_KEYS = frozenset(
    {"location", "category", "features", "duration_hours", "lead_hours", "plate", "customer"}
)


class SavedSearch(BaseModel):
    """A named set of search criteria belonging to one user."""

    id: int
    user_id: int
    name: str
    criteria: dict[str, Any]
    created_at: datetime


def save(conn: Connection, *, user_id: int, name: str, criteria: dict[str, Any]) -> SavedSearch:
    """Save (or replace) a named search for the user."""
    name = name.strip()
    if not 1 <= len(name) <= 80:
        raise InvalidInput("a saved search needs a name of 1-80 characters", field="name")
    unknown = set(criteria) - ALLOWED_KEYS
    if unknown:
        raise InvalidInput(
            f"unknown search criteria: {', '.join(sorted(unknown))}",
            field="criteria",
            hint=f"allowed: {', '.join(sorted(ALLOWED_KEYS))}",
        )
    row = conn.execute(
        text(
            "INSERT INTO saved_searches (user_id, name, criteria)"
            " VALUES (:u, :n, CAST(:c AS jsonb))"
            " ON CONFLICT (user_id, name) DO UPDATE SET criteria = EXCLUDED.criteria"
            " RETURNING id, user_id, name, criteria, created_at"
        ),
        {"u": user_id, "n": name, "c": to_json(criteria)},
    ).mappings()
    return SavedSearch.model_validate(dict(row.one()))


def list_saved(conn: Connection, *, user_id: int) -> list[SavedSearch]:
    """Return the user's saved searches by name."""
    rows = conn.execute(
        text(
            "SELECT id, user_id, name, criteria, created_at FROM saved_searches"
            " WHERE user_id = :u ORDER BY name"
        ),
        {"u": user_id},
    ).mappings()
    return [SavedSearch.model_validate(dict(r)) for r in rows]


def delete(conn: Connection, *, user_id: int, name: str) -> None:
    """Delete one of the user's saved searches."""
    name = name.strip()  # saved names are stored trimmed
    result = conn.execute(
        text("DELETE FROM saved_searches WHERE user_id = :u AND name = :n"),
        {"u": user_id, "n": name},
    )
    if result.rowcount == 0:
        raise NotFound(f"no saved search named {name!r}", field="name")
