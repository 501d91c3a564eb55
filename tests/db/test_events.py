"""Events outbox: written in the change's transaction, notified to listeners only at commit."""

from __future__ import annotations

import psycopg

from db import events, status
from db.database import libpq_url
from tests.conftest import add_vehicle, build_world


def test_listener_is_woken_with_the_event_id_after_commit(committed, database_url):
    with psycopg.connect(libpq_url(database_url), autocommit=True) as listener:
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
        got = [e for e in events.events_since(c) if e["id"] == change.event_id]
    assert got[0]["kind"] == "status_changed" and got[0]["payload"]["plate"] == "B EV 1"
    assert got[0]["seq"] is not None


def test_rolled_back_change_leaves_no_event(engine):
    with engine.connect() as c:
        before = events.latest_seq(c)
        c.rollback()
        with c.begin() as trans:
            world = build_world(c)
            add_vehicle(c, world, "B EV 2")
            trans.rollback()
        assert events.events_since(c, after_seq=before) == []


def _emit_in_own_transaction(engine, kind):
    c = engine.connect()
    c.begin()
    events.emit(c, kind=kind, payload={})
    return c


def test_an_event_that_commits_late_is_numbered_after_those_already_visible(committed):
    slow = _emit_in_own_transaction(committed, "slow")  # inserted first, lower id
    fast = _emit_in_own_transaction(committed, "fast")
    fast.commit()
    with committed.connect() as c:
        seen = events.events_since(c, after_seq=0)
    assert [e["kind"] for e in seen] == ["fast"]
    cursor = seen[-1]["seq"]
    slow.commit()
    with committed.connect() as c:
        late = events.events_since(c, after_seq=cursor)
    # A reader that moved past "fast" still gets "slow": its number comes from its commit.
    assert [e["kind"] for e in late] == ["slow"]
    assert late[0]["id"] < seen[0]["id"] and late[0]["seq"] > cursor
    slow.close()
    fast.close()


def test_many_writers_and_a_reconnecting_reader_see_every_event_once_in_order(committed):
    import random
    import threading

    writers, per_writer = 8, 40
    rng = random.Random(3)

    def write(n: int) -> None:
        wrng = random.Random(n)
        for i in range(per_writer):
            with committed.begin() as c:
                events.emit(c, kind="w", payload={"writer": n, "i": i})
                if wrng.random() < 0.3:  # hold the transaction open so commits interleave
                    c.exec_driver_sql("SELECT pg_sleep(0.002)")
                events.emit(c, kind="w2", payload={"writer": n, "i": i})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    got: list[dict] = []
    cursor = 0
    while True:
        # Writers still running when this pass began may commit more after it.
        writing = any(t.is_alive() for t in threads)
        # Each pass is a new connection: the reader "reconnects" at random points.
        with committed.connect() as c:
            batch = events.events_since(c, after_seq=cursor, limit=rng.randint(1, 25))
        got.extend(batch)
        if batch:
            cursor = batch[-1]["seq"]
        elif not writing:
            break
    for t in threads:
        t.join()
    seqs = [e["seq"] for e in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert len(got) == writers * per_writer * 2
    # Within one transaction, events keep their insert order.
    for n in range(writers):
        mine = [(e["payload"]["i"], e["kind"]) for e in got if e["payload"]["writer"] == n]
        assert mine == [(i, k) for i in range(per_writer) for k in ("w", "w2")]
