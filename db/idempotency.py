"""Idempotency keys: a replayed write returns its first answer and changes nothing."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, text

from db.errors import IdempotencyMismatch, InvalidInput
from db.events import to_json

MAX_KEY_LENGTH = 200
# Offline tablets replay queues after a shift at most; a week covers a long weekend too.
KEEP_FOR = timedelta(days=7)


class StoredResponse(BaseModel):
    """The first answer given to a request with this key."""

    status_code: int
    response: Any


def request_hash(method: str, path: str, body: Any) -> str:
    """Return a fingerprint of a request, to tell a replay from a reused key."""
    return hashlib.sha256(f"{method} {path} {to_json(body)}".encode()).hexdigest()


def claim(
    conn: Connection, *, user_id: int, key: str, method: str, path: str, fingerprint: str
) -> StoredResponse | None:
    """Return the stored answer for this key, or None after locking it for this transaction.

    The advisory lock makes a concurrent replay of the same key wait for the first request's
    transaction; it then finds the stored answer instead of applying the change again.
    """
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(
            "Idempotency-Key must be 1 to 200 printable characters",
            field="Idempotency-Key",
            hint="send a fresh UUID per change and reuse it only when retrying that change",
        )
    conn.execute(
        text("SELECT pg_advisory_xact_lock(CAST(:u AS integer), hashtext(:k))"),
        {"u": user_id % 2_147_483_647, "k": key},
    )
    row = (
        conn.execute(
            text(
                "SELECT method, path, request_hash, status_code, response FROM idempotency_keys"
                " WHERE user_id = :u AND key = :k AND created_at > now() - :keep"
            ),
            {"u": user_id, "k": key, "keep": KEEP_FOR},
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    if (row["method"], row["path"], row["request_hash"]) != (method, path, fingerprint):
        raise IdempotencyMismatch(
            "this Idempotency-Key was already used for a different request",
            field="Idempotency-Key",
            hint="use a new key for each distinct change",
        )
    return StoredResponse(status_code=row["status_code"], response=row["response"])


def remember(
    conn: Connection,
    *,
    user_id: int,
    key: str,
    method: str,
    path: str,
    fingerprint: str,
    status_code: int,
    response: Any,
) -> None:
    """Store the answer in the same transaction as the change it describes."""
    conn.execute(
        text(
            "INSERT INTO idempotency_keys"
            " (user_id, key, method, path, request_hash, status_code, response)"
            " VALUES (:u, :k, :m, :p, :h, :s, CAST(:r AS jsonb))"
            " ON CONFLICT (user_id, key) DO UPDATE SET method = EXCLUDED.method,"
            " path = EXCLUDED.path, request_hash = EXCLUDED.request_hash,"
            " status_code = EXCLUDED.status_code, response = EXCLUDED.response,"
            " created_at = now()"
        ),
        {
            "u": user_id,
            "k": key,
            "m": method,
            "p": path,
            "h": fingerprint,
            "s": status_code,
            "r": to_json(response),
        },
    )


def purge(conn: Connection) -> int:
    """Delete keys older than the replay window; return how many went."""
    return conn.execute(
        text("DELETE FROM idempotency_keys WHERE created_at < now() - :keep"), {"keep": KEEP_FOR}
    ).rowcount
