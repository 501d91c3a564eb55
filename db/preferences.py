"""Each user's notification preferences: which escalations toast, which sound, which push."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import Connection, text

from db.errors import InvalidInput


class NotificationPrefs(BaseModel):
    """What a user wants to be told about while a dashboard page is open."""

    toasts: bool = True
    sound: bool = True
    min_toast_level: int = Field(default=1, ge=1, le=9)
    sound_level: int = Field(default=3, ge=1, le=9)
    location_ids: list[int] = Field(default_factory=list)
    # Web Push to the user's devices (the counter app), per alert kind.
    push_overdue: bool = True
    push_conflicts: bool = True
    push_rollbacks: bool = True

    def _here(self, location_id: int | None) -> bool:
        return not self.location_ids or location_id in self.location_ids

    def wants_toast(self, *, level: int, location_id: int | None) -> bool:
        """Whether an escalation to `level` at `location_id` should show a toast."""
        return self.toasts and level >= self.min_toast_level and self._here(location_id)

    def wants_sound(self, *, level: int, location_id: int | None) -> bool:
        """Whether it should sound: critical ones only, by the user's own measure."""
        return self.sound and level >= self.sound_level and self._here(location_id)


def get(conn: Connection, *, user_id: int) -> NotificationPrefs:
    """Return the user's preferences (the defaults until they save their own)."""
    row = (
        conn.execute(
            text(
                "SELECT toasts, sound, min_toast_level, sound_level, location_ids,"
                " push_overdue, push_conflicts, push_rollbacks"
                " FROM user_preferences WHERE user_id = :u"
            ),
            {"u": user_id},
        )
        .mappings()
        .one_or_none()
    )
    return NotificationPrefs() if row is None else NotificationPrefs.model_validate(dict(row))


def save(conn: Connection, *, user_id: int, prefs: NotificationPrefs) -> NotificationPrefs:
    """Store the user's preferences; unknown locations are refused, not silently kept."""
    if prefs.location_ids:
        known = set(
            conn.execute(
                text("SELECT id FROM locations WHERE id = ANY(:ids)"),
                {"ids": list(prefs.location_ids)},
            ).scalars()
        )
        missing = sorted(set(prefs.location_ids) - known)
        if missing:
            raise InvalidInput(
                f"unknown location ids: {', '.join(map(str, missing))}",
                field="location_ids",
                hint="pick locations from the list; leave it empty for every location",
            )
    conn.execute(
        text(
            "INSERT INTO user_preferences"
            " (user_id, toasts, sound, min_toast_level, sound_level, location_ids,"
            "  push_overdue, push_conflicts, push_rollbacks)"
            " VALUES (:u, :t, :s, :m, :sl, :l, :po, :pc, :pr)"
            " ON CONFLICT (user_id) DO UPDATE SET toasts = EXCLUDED.toasts,"
            " sound = EXCLUDED.sound, min_toast_level = EXCLUDED.min_toast_level,"
            " sound_level = EXCLUDED.sound_level, location_ids = EXCLUDED.location_ids,"
            " push_overdue = EXCLUDED.push_overdue, push_conflicts = EXCLUDED.push_conflicts,"
            " push_rollbacks = EXCLUDED.push_rollbacks, updated_at = now()"
        ),
        {
            "u": user_id,
            "t": prefs.toasts,
            "s": prefs.sound,
            "m": prefs.min_toast_level,
            "sl": prefs.sound_level,
            "l": sorted(set(prefs.location_ids)),
            "po": prefs.push_overdue,
            "pc": prefs.push_conflicts,
            "pr": prefs.push_rollbacks,
        },
    )
    return get(conn, user_id=user_id)
