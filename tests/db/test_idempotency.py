"""Idempotency keys: a replay gets the first answer, a reused key for another change is refused."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from db import fleet, idempotency
from db.errors import IdempotencyMismatch, InvalidInput
from db.idempotency import StoredResponse, claim, remember, request_hash

BODY = {"vehicle_id": 7, "start": "2026-12-01T10:00:00+01:00", "minutes": 10}
PATH = "/api/holds"


def _claim(conn, user_id, key, *, method="POST", path=PATH, body=BODY):
    return claim(
        conn,
        user_id=user_id,
        key=key,
        method=method,
        path=path,
        fingerprint=request_hash(method, path, body),
    )


def _remember(conn, user_id, key, response, *, status_code=201, body=BODY):
    remember(
        conn,
        user_id=user_id,
        key=key,
        method="POST",
        path=PATH,
        fingerprint=request_hash("POST", PATH, body),
        status_code=status_code,
        response=response,
    )


def _age(conn, key, days):
    conn.execute(
        text(
            "UPDATE idempotency_keys SET created_at = now() - make_interval(days => :d)"
            " WHERE key = :k"
        ),
        {"d": days, "k": key},
    )


def test_first_claim_finds_nothing_and_a_replay_gets_the_stored_answer(conn, world):
    assert _claim(conn, world.agent.id, "k-1") is None
    _remember(conn, world.agent.id, "k-1", {"id": 41, "plate": "B AB 1"})
    replay = _claim(conn, world.agent.id, "k-1")
    assert replay == StoredResponse(status_code=201, response={"id": 41, "plate": "B AB 1"})
    # The body's key order is not part of the request.
    reordered = dict(reversed(list(BODY.items())))
    assert _claim(conn, world.agent.id, "k-1", body=reordered) == replay


def test_keys_belong_to_their_user(conn, world):
    _remember(conn, world.agent.id, "shared-key", {"id": 1})
    assert _claim(conn, world.agent2.id, "shared-key") is None


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", PATH, {**BODY, "minutes": 20}),
        ("POST", "/api/holds/9/convert", BODY),
        ("PUT", PATH, BODY),
    ],
)
def test_same_key_for_a_different_request_is_a_mismatch(conn, world, method, path, body):
    _remember(conn, world.agent.id, "k-2", {"id": 41})
    with pytest.raises(IdempotencyMismatch) as err:
        _claim(conn, world.agent.id, "k-2", method=method, path=path, body=body)
    assert err.value.field == "Idempotency-Key"
    assert "different request" in err.value.message


@pytest.mark.parametrize("key", ["", "x" * 201, "line\nbreak", "nul\x00byte", "\t", "esc\x1b[31m"])
def test_malformed_key_is_refused_naming_the_header(conn, world, key):
    with pytest.raises(InvalidInput) as err:
        _claim(conn, world.agent.id, key)
    assert err.value.field == "Idempotency-Key"
    assert "1 to 200 printable characters" in err.value.message


def test_longest_allowed_key_works(conn, world):
    key = "k" * 200
    assert _claim(conn, world.agent.id, key) is None
    _remember(conn, world.agent.id, key, {"ok": True}, status_code=200)
    assert _claim(conn, world.agent.id, key) == StoredResponse(
        status_code=200, response={"ok": True}
    )


def test_key_past_the_replay_window_is_forgotten_and_can_be_used_again(conn, world):
    _remember(conn, world.agent.id, "old", {"id": 1})
    _age(conn, "old", 8)
    assert _claim(conn, world.agent.id, "old", body={"other": "change"}) is None
    _remember(conn, world.agent.id, "old", {"id": 2}, body={"other": "change"})
    assert _claim(conn, world.agent.id, "old", body={"other": "change"}) == StoredResponse(
        status_code=201, response={"id": 2}
    )


def test_purge_deletes_only_keys_older_than_the_window(conn, world):
    for key in ("fresh", "six-days", "stale", "ancient"):
        _remember(conn, world.agent.id, key, {"key": key})
    _age(conn, "six-days", 6)
    _age(conn, "stale", 8)
    _age(conn, "ancient", 400)
    assert idempotency.purge(conn) == 2
    kept = conn.execute(text("SELECT key FROM idempotency_keys ORDER BY key")).scalars().all()
    assert kept == ["fresh", "six-days"]
    assert idempotency.purge(conn) == 0


def test_concurrent_replay_waits_for_the_first_request_and_gets_its_answer(committed):
    with committed.begin() as c:
        tablet = fleet.create_user(c, username="tablet", full_name="Counter Tablet")
    first_claimed = threading.Event()
    results: dict[str, object] = {}
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with committed.begin() as c:
                results["first"] = _claim(c, tablet.id, "retry-me")
                first_claimed.set()
                # Answer only once the replay is seen queued behind this request's lock.
                results["replay_waited"] = _wait_for_waiter(committed, tablet.id)
                _remember(c, tablet.id, "retry-me", {"id": 99})
                results["remembered_at"] = time.monotonic()
        except BaseException as exc:
            errors.append(exc)
            first_claimed.set()

    def replay() -> None:
        try:
            first_claimed.wait(10)
            with committed.begin() as c:
                results["replay"] = _claim(c, tablet.id, "retry-me")
                results["replay_answered_at"] = time.monotonic()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=replay)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    assert results["first"] is None
    assert results["replay_waited"] is True
    assert results["replay"] == StoredResponse(status_code=201, response={"id": 99})
    assert results["replay_answered_at"] > results["remembered_at"]
    with committed.connect() as c:
        assert c.execute(text("SELECT count(*) FROM idempotency_keys")).scalar_one() == 1


def _wait_for_waiter(engine, user_id: int, timeout: float = 10) -> bool:
    """Return True once a session waits for this user's key lock, False after the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as c:
            waiting = c.execute(
                text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                    " WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objsubid = 2"
                    " AND d.datname = current_database() AND l.classid = CAST(:u AS oid)"
                ),
                {"u": user_id},
            ).scalar_one()
        if waiting:
            return True
        time.sleep(0.02)
    return False
