"""Notification preferences: the defaults, saving and replacing, and who hears what."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from db import preferences
from db.errors import InvalidInput
from db.preferences import NotificationPrefs


def _rows(conn, user_id: int) -> int:
    return conn.execute(
        text("SELECT count(*) FROM user_preferences WHERE user_id = :u"), {"u": user_id}
    ).scalar_one()


def test_a_user_who_saved_nothing_gets_toasts_for_all_and_sound_from_level_three(conn, world):
    prefs = preferences.get(conn, user_id=world.agent.id)

    assert prefs == NotificationPrefs(
        toasts=True, sound=True, min_toast_level=1, sound_level=3, location_ids=[]
    )
    assert _rows(conn, world.agent.id) == 0  # reading never writes a row


def test_saved_preferences_come_back_and_a_second_save_replaces_the_first(conn, world):
    first = NotificationPrefs(
        toasts=False,
        sound=False,
        min_toast_level=2,
        sound_level=4,
        location_ids=[world.muc.id],
        push_overdue=False,
        push_rollbacks=False,
    )
    assert preferences.save(conn, user_id=world.agent.id, prefs=first) == first
    assert preferences.get(conn, user_id=world.agent.id) == first

    # Duplicates and order in the choice do not matter: one sorted list is kept.
    second = NotificationPrefs(
        min_toast_level=3, location_ids=[world.nyc.id, world.ber.id, world.nyc.id]
    )
    saved = preferences.save(conn, user_id=world.agent.id, prefs=second)

    assert saved.toasts is True and saved.sound is True
    assert saved.min_toast_level == 3 and saved.sound_level == 3
    assert saved.location_ids == sorted([world.ber.id, world.nyc.id])
    assert preferences.get(conn, user_id=world.agent.id) == saved
    assert _rows(conn, world.agent.id) == 1
    # Another user's preferences are their own.
    assert preferences.get(conn, user_id=world.manager.id) == NotificationPrefs()


def test_an_unknown_location_is_refused_and_the_old_preferences_stay(conn, world):
    kept = NotificationPrefs(sound=False, location_ids=[world.ber.id])
    preferences.save(conn, user_id=world.agent.id, prefs=kept)
    missing = world.nyc.id + 1000

    with pytest.raises(InvalidInput, match=f"unknown location ids: {missing}") as err:
        preferences.save(
            conn,
            user_id=world.agent.id,
            prefs=NotificationPrefs(location_ids=[world.muc.id, missing]),
        )

    assert err.value.field == "location_ids"
    assert preferences.get(conn, user_id=world.agent.id) == kept


@pytest.mark.parametrize("field", ["min_toast_level", "sound_level"])
@pytest.mark.parametrize("level", [0, 10])
def test_levels_outside_one_to_nine_are_not_preferences(field, level):
    with pytest.raises(ValidationError):
        NotificationPrefs(**{field: level})


@pytest.mark.parametrize(
    ("prefs", "level", "where", "toast", "sound"),
    [
        # Defaults: every escalation toasts; levels 3 and up (critical) also sound.
        (NotificationPrefs(), 1, 7, True, False),
        (NotificationPrefs(), 2, None, True, False),
        (NotificationPrefs(), 3, 7, True, True),
        (NotificationPrefs(), 4, 7, True, True),
        # Thresholds are inclusive and independent of each other.
        (NotificationPrefs(min_toast_level=3, sound_level=2), 2, 7, False, True),
        (NotificationPrefs(min_toast_level=3, sound_level=2), 3, 7, True, True),
        # Switched off: nothing of that kind, whatever the level.
        (NotificationPrefs(toasts=False), 4, 7, False, True),
        (NotificationPrefs(sound=False), 4, 7, True, False),
        # Chosen locations only; an event with no location is not one of them.
        (NotificationPrefs(location_ids=[7, 8]), 4, 8, True, True),
        (NotificationPrefs(location_ids=[7, 8]), 4, 9, False, False),
        (NotificationPrefs(location_ids=[7]), 4, None, False, False),
    ],
)
def test_who_gets_a_toast_and_who_hears_the_sound(prefs, level, where, toast, sound):
    assert prefs.wants_toast(level=level, location_id=where) is toast
    assert prefs.wants_sound(level=level, location_id=where) is sound
