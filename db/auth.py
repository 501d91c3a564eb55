"""Staff credentials: argon2id password hashes and revocable tokens stored only as hashes."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel
from sqlalchemy import Connection, text

from db.errors import InvalidInput, NotAuthenticated, NotFound
from db.fleet import User, get_user

# argon2-cffi's defaults are argon2id with RFC 9106's low-memory profile.
_hasher = PasswordHasher()
# Verifying against this keeps unknown usernames as slow as wrong passwords (no user probing).
_DUMMY_HASH = _hasher.hash("not-a-real-password")
MIN_PASSWORD_LENGTH = 10
TOKEN_KINDS = ("session", "api")
# Writing last_used_at on every request would turn each read into a write.
_TOUCH_EVERY = timedelta(minutes=1)
_TOKEN_COLUMNS = "id, user_id, kind, label, created_at, expires_at, last_used_at, revoked_at"


class TokenInfo(BaseModel):
    """A token as its owner may see it: never the token itself."""

    id: int
    user_id: int
    kind: str
    label: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class IssuedToken(BaseModel):
    """A freshly issued token: `token` is shown once and stored only as a hash."""

    token: str
    info: TokenInfo


def hash_password(password: str) -> str:
    """Return the argon2id hash of a password that meets the length rule."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"password is too short ({len(password)} characters)",
            field="password",
            hint=f"use at least {MIN_PASSWORD_LENGTH} characters",
        )
    return _hasher.hash(password)


def set_password(conn: Connection, *, user_id: int, password: str) -> int:
    """Set a user's password and revoke every token they hold; return how many were revoked.

    Sessions and API tokens alike: a token got with the old password (a stolen tablet's, a
    script's) must not outlive it. Open pages and streams close within seconds (api/credentials).
    """
    user = get_user(conn, id=user_id)
    if user.role == "system":
        raise InvalidInput(f"user {user.username} cannot sign in", field="user")
    conn.execute(
        text("UPDATE users SET password_hash = :h, password_changed_at = now() WHERE id = :id"),
        {"h": hash_password(password), "id": user_id},
    )
    revoked = conn.execute(
        text(
            "UPDATE auth_tokens SET revoked_at = now()"
            " WHERE user_id = :id AND revoked_at IS NULL AND expires_at > now()"
        ),
        {"id": user_id},
    )
    return revoked.rowcount


def set_active(conn: Connection, *, user_id: int, active: bool) -> int:
    """Let a user sign in or stop them; deactivating revokes their tokens (returns how many)."""
    user = get_user(conn, id=user_id)
    if user.role == "system":
        raise InvalidInput(f"user {user.username} cannot sign in", field="user")
    conn.execute(text("UPDATE users SET active = :a WHERE id = :id"), {"a": active, "id": user_id})
    if active:
        return 0
    # Revoked, not only refused: reactivating the account must not revive a stolen token.
    return conn.execute(
        text(
            "UPDATE auth_tokens SET revoked_at = now()"
            " WHERE user_id = :id AND revoked_at IS NULL AND expires_at > now()"
        ),
        {"id": user_id},
    ).rowcount


def authenticate(conn: Connection, *, username: str, password: str) -> User:
    """Return the active user whose password this is, or raise NotAuthenticated."""
    row = (
        conn.execute(
            text(
                "SELECT id, password_hash FROM users"
                " WHERE username = :u AND active AND role <> 'system'"
            ),
            {"u": username.strip().lower()},
        )
        .mappings()
        .first()
    )
    stored = row["password_hash"] if row and row["password_hash"] else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
        ok = row is not None and row["password_hash"] is not None
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        raise NotAuthenticated(
            "wrong username or password", hint="check both; ask an admin to reset the password"
        )
    if _hasher.check_needs_rehash(stored):
        conn.execute(
            text("UPDATE users SET password_hash = :h WHERE id = :id"),
            {"h": _hasher.hash(password), "id": row["id"]},
        )
    return get_user(conn, id=row["id"])


def _digest(token: str) -> bytes:
    # Tokens are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).digest()


def issue_token(
    conn: Connection, *, user_id: int, kind: str, lifetime: timedelta, label: str = ""
) -> IssuedToken:
    """Create a token for a user; the raw value is returned once and stored hashed."""
    if kind not in TOKEN_KINDS:
        raise InvalidInput(f"unknown token kind {kind!r}", field="kind", hint="session or api")
    if lifetime <= timedelta(0):
        raise InvalidInput("token lifetime must be positive", field="lifetime")
    user = get_user(conn, id=user_id)
    if not user.active or user.role == "system":
        raise InvalidInput(f"user {user.username} cannot sign in", field="user")
    raw = secrets.token_urlsafe(32)
    row = (
        conn.execute(
            text(
                "INSERT INTO auth_tokens (user_id, kind, token_hash, label, expires_at)"  # noqa: S608
                f" VALUES (:u, :k, :h, :l, now() + :life) RETURNING {_TOKEN_COLUMNS}"
            ),
            {"u": user_id, "k": kind, "h": _digest(raw), "l": label[:100], "life": lifetime},
        )
        .mappings()
        .one()
    )
    return IssuedToken(token=raw, info=TokenInfo.model_validate(dict(row)))


class Credential(NamedTuple):
    """A live token: whose it is, its id, and when it expires."""

    user: User
    token_id: int
    expires_at: datetime


def resolve_token(conn: Connection, *, token: str, kind: str | None = None) -> Credential:
    """Return the user a live token belongs to, its id and expiry, or raise NotAuthenticated."""
    row = (
        conn.execute(
            text(
                "SELECT t.id, t.user_id, t.expires_at, t.last_used_at FROM auth_tokens t"
                " JOIN users u ON u.id = t.user_id"
                " WHERE t.token_hash = :h AND t.revoked_at IS NULL AND t.expires_at > now()"
                " AND u.active AND (CAST(:kind AS text) IS NULL OR t.kind = :kind)"
            ),
            {"h": _digest(token), "kind": kind},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotAuthenticated(
            "the token is unknown, expired or revoked", hint="sign in again for a new one"
        )
    conn.execute(
        text(
            "UPDATE auth_tokens SET last_used_at = now()"
            " WHERE id = :id AND (last_used_at IS NULL OR last_used_at < now() - :every)"
        ),
        {"id": row["id"], "every": _TOUCH_EVERY},
    )
    return Credential(get_user(conn, id=row["user_id"]), row["id"], row["expires_at"])


def ended_tokens(conn: Connection, *, token_ids: Collection[int]) -> dict[int, str]:
    """Return, for each of these tokens that no longer admits anyone, why (a sentence)."""
    if not token_ids:
        return {}
    rows = conn.execute(
        text(
            "SELECT i.id, CASE"
            "   WHEN t.id IS NULL THEN 'the session no longer exists'"
            "   WHEN NOT u.active THEN 'your account was deactivated'"
            # set_password revokes in its own transaction: both carry that transaction's now().
            "   WHEN t.revoked_at = u.password_changed_at THEN 'your password was changed'"
            "   WHEN t.revoked_at IS NOT NULL THEN 'you were signed out or the token was revoked'"
            "   ELSE 'the session expired' END AS why"
            " FROM unnest(CAST(:ids AS bigint[])) AS i(id)"
            " LEFT JOIN auth_tokens t ON t.id = i.id"
            " LEFT JOIN users u ON u.id = t.user_id"
            " WHERE t.id IS NULL OR t.revoked_at IS NOT NULL OR t.expires_at <= now()"
            " OR NOT u.active"
        ),
        {"ids": list(token_ids)},
    )
    return {r.id: r.why for r in rows}


def revoke_token(conn: Connection, *, token_id: int, user_id: int | None = None) -> None:
    """Revoke a token (only the owner's, when user_id is given)."""
    done = conn.execute(
        text(
            "UPDATE auth_tokens SET revoked_at = coalesce(revoked_at, now())"
            " WHERE id = :id AND (CAST(:u AS bigint) IS NULL OR user_id = :u) RETURNING id"
        ),
        {"id": token_id, "u": user_id},
    ).first()
    if done is None:
        raise NotFound(f"unknown token {token_id}", field="token_id")


def list_tokens(conn: Connection, *, user_id: int) -> list[TokenInfo]:
    """Return a user's live tokens, newest first."""
    rows = conn.execute(
        text(
            f"SELECT {_TOKEN_COLUMNS} FROM auth_tokens"  # noqa: S608 - fixed column list
            " WHERE user_id = :u AND revoked_at IS NULL AND expires_at > now() ORDER BY id DESC"
        ),
        {"u": user_id},
    ).mappings()
    return [TokenInfo.model_validate(dict(r)) for r in rows]


class Account(BaseModel):
    """A staff user as an admin sees it: whether they can sign in, and their live tokens."""

    user: User
    has_password: bool
    tokens: list[TokenInfo]


def list_accounts(conn: Connection) -> list[Account]:
    """Return every user by username, each with their live tokens, newest first."""
    users = conn.execute(
        text(
            "SELECT id, username, full_name, role, home_location_id, active,"
            " password_hash IS NOT NULL AS has_password FROM users ORDER BY username"
        )
    ).mappings()
    accounts = {
        u["id"]: Account(
            user=User.model_validate(dict(u)), has_password=u["has_password"], tokens=[]
        )
        for u in users
    }
    tokens = conn.execute(
        text(
            f"SELECT {_TOKEN_COLUMNS} FROM auth_tokens"  # noqa: S608 - fixed column list
            " WHERE revoked_at IS NULL AND expires_at > now() ORDER BY id DESC"
        )
    ).mappings()
    for t in tokens:
        accounts[t["user_id"]].tokens.append(TokenInfo.model_validate(dict(t)))
    return list(accounts.values())
