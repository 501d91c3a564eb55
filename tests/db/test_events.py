"""Events outbox: written in the change's transaction, notified to listeners only at commit."""

from __future__ import annotations

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from db import events, status
from tests.conftest import add_vehicle, build_world


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_listener_is_woken_with_the_event_id_after_commit(committed, database_url):
    with psycopg.connect(_libpq(database_url), autocommit=True) as listener:
        listener.execute(f"LISTEN {events.CHANNEL}")
        with committed.begin() as c:
            world = build_world(c)
            v = add_vehicle(c, world, "B EV 1")
            change = status.change_status(
                c, vehicle_id=v.id, new_status="cleaning", changed_by=world.agent.id, reason="wash"
            )
        ids = [int(n.payload) for n in listener.notifies(timeout=2, stop_after=10)]
    assert change.event_id in ids
    with committed.connect() as c:
        got = events.events_since(c, after_id=change.event_id - 1)
    assert got[0]["kind"] == "status_changed" and got[0]["payload"]["plate"] == "B EV 1"


def test_rolled_back_change_leaves_no_event(engine):
    with engine.connect() as c:
        before = c.execute(text("SELECT coalesce(max(id), 0) FROM availability_events")).scalar()
        c.rollback()
        with c.begin() as trans:
            world = build_world(c)
            add_vehicle(c, world, "B EV 2")
            trans.rollback()
        assert events.events_since(c, after_id=before) == []
