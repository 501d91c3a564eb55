"""Credentials: argon2id passwords, one answer for every failed sign-in, tokens stored hashed."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text

from db import auth, fleet
from db.errors import InvalidInput, NotAuthenticated, NotFound
from tests.conftest import build_world

PASSWORD = "correct horse battery"
DAY = timedelta(days=1)


def _stored_hash(conn, user_id):
    return conn.execute(
        text("SELECT password_hash FROM users WHERE id = :id"), {"id": user_id}
    ).scalar_one()


def _token_row(conn, token_id):
    return conn.execute(text("SELECT * FROM auth_tokens WHERE id = :id"), {"id": token_id}).one()


def _refusal(call) -> NotAuthenticated:
    with pytest.raises(NotAuthenticated) as err:
        call()
    return err.value


# --- passwords ---------------------------------------------------------------------------------


def test_short_password_is_refused_naming_the_field(conn, world):
    with pytest.raises(InvalidInput) as err:
        auth.set_password(conn, user_id=world.agent.id, password="x" * 9)
    assert err.value.field == "password"
    assert "9 characters" in err.value.message and "10" in err.value.hint
    assert _stored_hash(conn, world.agent.id) is None
    assert auth.hash_password("x" * 10).startswith("$argon2id$")


def test_password_is_stored_as_an_argon2id_hash_never_as_typed(conn, world):
    auth.set_password(conn, user_id=world.agent.id, password=PASSWORD)
    stored = _stored_hash(conn, world.agent.id)
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert PasswordHasher().verify(stored, PASSWORD)
    changed_at = conn.execute(
        text("SELECT password_changed_at FROM users WHERE id = :id"), {"id": world.agent.id}
    ).scalar_one()
    assert changed_at is not None
    # Salted: the same password gives another hash for another user.
    auth.set_password(conn, user_id=world.agent2.id, password=PASSWORD)
    assert _stored_hash(conn, world.agent2.id) != stored


def test_password_of_an_unknown_user_is_refused(conn, world):
    with pytest.raises(NotFound):
        auth.set_password(conn, user_id=world.agent.id + 1000, password=PASSWORD)


def test_system_user_can_never_be_given_a_password(conn, world):
    system_id = fleet.system_user_id(conn)
    with pytest.raises(InvalidInput, match="cannot sign in"):
        auth.set_password(conn, user_id=system_id, password=PASSWORD)
    assert _stored_hash(conn, system_id) is None


def test_authenticate_returns_the_user_for_the_right_password(conn, world):
    auth.set_password(conn, user_id=world.agent.id, password=PASSWORD)
    assert auth.authenticate(conn, username="anna", password=PASSWORD) == world.agent
    # Typed on a tablet: a capital first letter or a trailing space still finds the account.
    assert auth.authenticate(conn, username=" Anna ", password=PASSWORD).id == world.agent.id


def test_every_failed_sign_in_gets_the_same_answer(conn, world):
    auth.set_password(conn, user_id=world.agent.id, password=PASSWORD)
    auth.set_password(conn, user_id=world.agent2.id, password=PASSWORD)
    conn.execute(text("UPDATE users SET active = false WHERE id = :id"), {"id": world.agent2.id})
    # A system user with a hash written behind the engine's back still cannot sign in.
    conn.execute(
        text("UPDATE users SET password_hash = :h WHERE id = :id"),
        {"h": auth.hash_password(PASSWORD), "id": fleet.system_user_id(conn)},
    )
    refusals = {
        "wrong password": _refusal(
            lambda: auth.authenticate(conn, username="anna", password=PASSWORD + "!")
        ),
        "unknown user": _refusal(
            lambda: auth.authenticate(conn, username="nobody", password=PASSWORD)
        ),
        "inactive user": _refusal(
            lambda: auth.authenticate(conn, username="ben", password=PASSWORD)
        ),
        "no password set": _refusal(
            lambda: auth.authenticate(conn, username="maria", password=PASSWORD)
        ),
        "system user": _refusal(
            lambda: auth.authenticate(conn, username="system", password=PASSWORD)
        ),
    }
    answers = {(e.message, e.hint, e.field) for e in refusals.values()}
    assert answers == {
        (
            "wrong username or password",
            "check both; ask an admin to reset the password",
            None,
        )
    }


def test_user_without_password_is_not_let_in_by_the_dummy_hash(conn, world):
    # Unknown users are checked against a dummy hash to take as long; its password must not work.
    refusal = _refusal(
        lambda: auth.authenticate(conn, username="maria", password="not-a-real-password")
    )
    assert refusal.message == "wrong username or password"
    refusal = _refusal(
        lambda: auth.authenticate(conn, username="nobody", password="not-a-real-password")
    )
    assert refusal.message == "wrong username or password"


def test_weak_old_hash_is_upgraded_at_the_next_sign_in(conn, world):
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    conn.execute(
        text("UPDATE users SET password_hash = :h WHERE id = :id"),
        {"h": weak, "id": world.agent.id},
    )
    auth.authenticate(conn, username="anna", password=PASSWORD)
    upgraded = _stored_hash(conn, world.agent.id)
    assert upgraded != weak
    assert not PasswordHasher().check_needs_rehash(upgraded)
    assert auth.authenticate(conn, username="anna", password=PASSWORD) == world.agent


def test_new_password_revokes_every_token_of_that_user_only(conn, world):
    auth.set_password(conn, user_id=world.agent.id, password=PASSWORD)
    session = auth.issue_token(conn, user_id=world.agent.id, kind="session", lifetime=DAY)
    api = auth.issue_token(conn, user_id=world.agent.id, kind="api", lifetime=DAY)
    other = auth.issue_token(conn, user_id=world.agent2.id, kind="session", lifetime=DAY)

    auth.set_password(conn, user_id=world.agent.id, password="a brand new password")

    _refusal(lambda: auth.resolve_token(conn, token=session.token))
    _refusal(lambda: auth.resolve_token(conn, token=api.token))
    assert _token_row(conn, session.info.id).revoked_at is not None
    assert auth.ended_tokens(conn, token_ids=[session.info.id, api.info.id, other.info.id]) == {
        session.info.id: "your password was changed",
        api.info.id: "your password was changed",
    }
    assert auth.resolve_token(conn, token=other.token)[:2] == (world.agent2, other.info.id)
    _refusal(lambda: auth.authenticate(conn, username="anna", password=PASSWORD))
    assert auth.authenticate(conn, username="anna", password="a brand new password").id == (
        world.agent.id
    )


# --- tokens ------------------------------------------------------------------------------------


def test_issued_token_is_shown_once_and_stored_only_as_its_sha256(conn, world):
    issued = auth.issue_token(
        conn, user_id=world.agent.id, kind="api", lifetime=DAY, label="night export"
    )
    assert len(issued.token) >= 43  # 256 random bits, URL-safe
    row = _token_row(conn, issued.info.id)
    assert bytes(row.token_hash) == hashlib.sha256(issued.token.encode()).digest()
    assert row.label == "night export" and row.kind == "api" and row.user_id == world.agent.id
    assert row.expires_at - row.created_at == DAY
    anywhere = conn.execute(
        text("SELECT count(*) FROM auth_tokens t WHERE strpos(CAST(t AS text), :raw) > 0"),
        {"raw": issued.token},
    ).scalar_one()
    assert anywhere == 0
    listed = auth.list_tokens(conn, user_id=world.agent.id)
    assert [t.id for t in listed] == [issued.info.id]
    assert issued.token not in listed[0].model_dump_json()
    again = auth.issue_token(conn, user_id=world.agent.id, kind="api", lifetime=DAY)
    assert again.token != issued.token


def test_resolve_token_returns_its_owner_and_id_and_notes_the_use(conn, world):
    issued = auth.issue_token(conn, user_id=world.manager.id, kind="session", lifetime=DAY)
    assert _token_row(conn, issued.info.id).last_used_at is None
    assert auth.resolve_token(conn, token=issued.token, kind="session") == (
        world.manager,
        issued.info.id,
        issued.info.expires_at,
    )
    assert auth.resolve_token(conn, token=issued.token)[:2] == (world.manager, issued.info.id)
    assert _token_row(conn, issued.info.id).last_used_at is not None


def test_token_past_its_expiry_is_refused(conn, world):
    issued = auth.issue_token(conn, user_id=world.agent.id, kind="api", lifetime=DAY)
    conn.execute(
        text("UPDATE auth_tokens SET expires_at = now() - interval '1 second' WHERE id = :id"),
        {"id": issued.info.id},
    )
    refusal = _refusal(lambda: auth.resolve_token(conn, token=issued.token))
    assert refusal.message == "the token is unknown, expired or revoked"
    assert auth.list_tokens(conn, user_id=world.agent.id) == []


def test_token_with_a_short_lifetime_runs_out_by_the_clock(committed):
    with committed.begin() as c:
        world = build_world(c)
        issued = auth.issue_token(
            c, user_id=world.agent.id, kind="session", lifetime=timedelta(milliseconds=300)
        )
    with committed.begin() as c:
        assert auth.resolve_token(c, token=issued.token)[0].id == world.agent.id
    time.sleep(0.4)
    with committed.begin() as c:
        _refusal(lambda: auth.resolve_token(c, token=issued.token))
        assert auth.ended_tokens(c, token_ids=[issued.info.id]) == {
            issued.info.id: "the session expired"
        }


def test_revoked_unknown_and_wrong_kind_tokens_are_refused(conn, world):
    session = auth.issue_token(conn, user_id=world.agent.id, kind="session", lifetime=DAY)
    api = auth.issue_token(conn, user_id=world.agent.id, kind="api", lifetime=DAY)

    _refusal(lambda: auth.resolve_token(conn, token=session.token, kind="api"))
    _refusal(lambda: auth.resolve_token(conn, token=api.token, kind="session"))
    _refusal(lambda: auth.resolve_token(conn, token=session.token + "x"))
    _refusal(lambda: auth.resolve_token(conn, token=""))

    auth.revoke_token(conn, token_id=session.info.id, user_id=world.agent.id)
    _refusal(lambda: auth.resolve_token(conn, token=session.token))
    assert auth.ended_tokens(conn, token_ids=[session.info.id, api.info.id, 10**9]) == {
        session.info.id: "you were signed out or the token was revoked",
        10**9: "the session no longer exists",
    }
    assert [t.id for t in auth.list_tokens(conn, user_id=world.agent.id)] == [api.info.id]
    # Revoking twice is harmless and keeps the first revocation time.
    first = _token_row(conn, session.info.id).revoked_at
    auth.revoke_token(conn, token_id=session.info.id)
    assert _token_row(conn, session.info.id).revoked_at == first


def test_token_of_a_deactivated_user_stops_working(conn, world):
    issued = auth.issue_token(conn, user_id=world.agent.id, kind="api", lifetime=DAY)
    conn.execute(text("UPDATE users SET active = false WHERE id = :id"), {"id": world.agent.id})
    _refusal(lambda: auth.resolve_token(conn, token=issued.token))
    assert auth.ended_tokens(conn, token_ids=[issued.info.id]) == {
        issued.info.id: "your account was deactivated"
    }


def test_system_and_deactivated_users_cannot_get_a_token(conn, world):
    with pytest.raises(InvalidInput, match="system cannot sign in") as err:
        auth.issue_token(conn, user_id=fleet.system_user_id(conn), kind="api", lifetime=DAY)
    assert err.value.field == "user"
    conn.execute(text("UPDATE users SET active = false WHERE id = :id"), {"id": world.agent.id})
    with pytest.raises(InvalidInput, match="anna cannot sign in"):
        auth.issue_token(conn, user_id=world.agent.id, kind="session", lifetime=DAY)
    assert conn.execute(text("SELECT count(*) FROM auth_tokens")).scalar_one() == 0


@pytest.mark.parametrize(
    ("kind", "lifetime", "field"),
    [("cookie", DAY, "kind"), ("api", timedelta(0), "lifetime"), ("api", -DAY, "lifetime")],
)
def test_unknown_kind_or_non_positive_lifetime_is_refused(conn, world, kind, lifetime, field):
    with pytest.raises(InvalidInput) as err:
        auth.issue_token(conn, user_id=world.agent.id, kind=kind, lifetime=lifetime)
    assert err.value.field == field


def test_revoking_someone_elses_token_is_not_found_and_leaves_it_working(conn, world):
    theirs = auth.issue_token(conn, user_id=world.agent2.id, kind="api", lifetime=DAY)
    with pytest.raises(NotFound) as err:
        auth.revoke_token(conn, token_id=theirs.info.id, user_id=world.agent.id)
    assert err.value.message == f"unknown token {theirs.info.id}"
    assert auth.resolve_token(conn, token=theirs.token)[:2] == (world.agent2, theirs.info.id)
    with pytest.raises(NotFound):
        auth.revoke_token(conn, token_id=theirs.info.id + 1000)


def test_accounts_list_who_can_sign_in_and_their_live_tokens(conn, world):
    auth.set_password(conn, user_id=world.agent.id, password=PASSWORD)
    live = auth.issue_token(conn, user_id=world.agent.id, kind="api", lifetime=DAY, label="ci")
    gone = auth.issue_token(conn, user_id=world.agent.id, kind="session", lifetime=DAY)
    auth.revoke_token(conn, token_id=gone.info.id)
    accounts = {a.user.username: a for a in auth.list_accounts(conn)}
    assert list(accounts) == ["anna", "ben", "maria"]
    assert accounts["anna"].has_password and not accounts["ben"].has_password
    assert [(t.id, t.label) for t in accounts["anna"].tokens] == [(live.info.id, "ci")]
    assert accounts["maria"].tokens == [] and accounts["maria"].user == world.manager
