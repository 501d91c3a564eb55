"""Web Push subscriptions: which devices hear a user's alerts, and who hears each alert.

A subscription is what a browser's PushManager hands out: an endpoint URL at the browser's
push service plus the keys the message is encrypted for. It belongs to one user on one
device (the counter app's own device id); the same browser signed in by someone else moves
to them. The push service saying "gone" (404/410) deletes it, and its waiting messages with
it. Encryption and sending live in pipeline/notify.py; this module never commits.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel
from sqlalchemy import Connection, text

from db.errors import InvalidInput, NotFound

DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MAX_ENDPOINT = 2000

# The push services of the browsers staff use: Chrome and Android (FCM), Firefox, Safari
# and iOS, Edge. A subscription elsewhere is refused: the server would POST to any URL a
# user typed otherwise. FLEET_PUSH_SERVICES replaces the list.
PUSH_SERVICES = (
    "https://fcm.googleapis.com",
    "https://updates.push.services.mozilla.com",
    "https://web.push.apple.com",
    "https://*.notify.windows.com",
)

# Alert kind -> the preference that turns its pushes on.
PUSH_PREFERENCE = {
    "overdue_escalated": "push_overdue",
    "conflict_detected": "push_conflicts",
    "conflict_escalated": "push_conflicts",
    "status_changed": "push_rollbacks",
}


class Subscription(BaseModel):
    """One device's push subscription (a push_subscriptions row)."""

    id: int
    user_id: int
    device_id: str
    endpoint: str
    p256dh: str
    auth: str
    device_label: str
    created_at: datetime
    updated_at: datetime
    last_sent_at: datetime | None

    @property
    def push_service(self) -> str:
        """The origin of the push service holding this subscription (scheme://host[:port])."""
        return "/".join(self.endpoint.split("/", 3)[:3])

    @property
    def info(self) -> dict[str, Any]:
        """The subscription as the browser's PushSubscription.toJSON() gives it."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def _b64url(value: str, field: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise InvalidInput(
            f"{field} is not base64url",
            field=field,
            hint="send PushSubscription.toJSON().keys as the browser gives it",
        ) from None


def _service_matches(endpoint: str, service: str) -> bool:
    e, s = urlsplit(endpoint), urlsplit(service)
    host, pattern = (e.hostname or "").lower(), (s.hostname or "").lower()
    if e.scheme != s.scheme or not host:
        return False
    if s.port is not None and e.port != s.port:
        return False
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def check_subscription(
    *, endpoint: str, p256dh: str, auth: str, device_id: str, services: list[str] | tuple
) -> None:
    """Raise InvalidInput naming what is wrong with a subscription the browser sent."""
    if not DEVICE_ID.match(device_id):
        raise InvalidInput(
            "device id must be 8-64 letters, digits, '-' or '_'",
            field="device_id",
            hint="the app makes one with crypto.randomUUID() and keeps it",
        )
    if len(endpoint) > MAX_ENDPOINT or not any(_service_matches(endpoint, s) for s in services):
        raise InvalidInput(
            f"push endpoint {endpoint[:120]!r} is not at a known push service",
            field="endpoint",
            hint="subscribe with the browser's PushManager; known services: "
            + ", ".join(services)
            + " (FLEET_PUSH_SERVICES sets them)",
        )
    key = _b64url(p256dh, "keys.p256dh")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
    except ValueError:
        raise InvalidInput(
            "keys.p256dh is not a P-256 public key (65 bytes, uncompressed point)",
            field="keys.p256dh",
            hint="send PushSubscription.toJSON().keys as the browser gives it",
        ) from None
    if len(_b64url(auth, "keys.auth")) != 16:
        raise InvalidInput(
            "keys.auth must be the 16-byte auth secret",
            field="keys.auth",
            hint="send PushSubscription.toJSON().keys as the browser gives it",
        )


def subscribe(
    conn: Connection,
    *,
    user_id: int,
    device_id: str,
    endpoint: str,
    p256dh: str,
    auth: str,
    device_label: str = "",
    services: list[str] | tuple = PUSH_SERVICES,
) -> Subscription:
    """Store the device's subscription for the user, replacing the device's earlier one.

    A browser has one endpoint; if it was another user's (a shared tablet, the next shift
    signed in), it moves to this user and leaves the other's list.
    """
    check_subscription(
        endpoint=endpoint, p256dh=p256dh, auth=auth, device_id=device_id, services=services
    )
    # The endpoint may sit on another of this user's rows or another user's: clear it first,
    # so the upsert below has one unique key to meet.
    conn.execute(
        text(
            "DELETE FROM push_subscriptions WHERE endpoint = :e"
            " AND NOT (user_id = :u AND device_id = :d)"
        ),
        {"e": endpoint, "u": user_id, "d": device_id},
    )
    row = (
        conn.execute(
            text(
                "INSERT INTO push_subscriptions"
                " (user_id, device_id, endpoint, p256dh, auth, device_label)"
                " VALUES (:u, :d, :e, :k, :a, :l)"
                " ON CONFLICT (user_id, device_id) DO UPDATE SET endpoint = EXCLUDED.endpoint,"
                " p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth,"
                " device_label = EXCLUDED.device_label, updated_at = now()"
                " RETURNING *"
            ),
            {
                "u": user_id,
                "d": device_id,
                "e": endpoint,
                "k": p256dh,
                "a": auth,
                "l": device_label.strip()[:200],
            },
        )
        .mappings()
        .one()
    )
    return Subscription.model_validate(dict(row))


def list_for_user(conn: Connection, *, user_id: int) -> list[Subscription]:
    """Return the user's devices that receive pushes, newest first."""
    rows = conn.execute(
        text(
            "SELECT * FROM push_subscriptions WHERE user_id = :u ORDER BY updated_at DESC, id DESC"
        ),
        {"u": user_id},
    ).mappings()
    return [Subscription.model_validate(dict(r)) for r in rows]


def unsubscribe(conn: Connection, *, user_id: int, device_id: str) -> None:
    """Stop pushes to one of the user's devices; NotFound if it had none."""
    gone = conn.execute(
        text(
            "DELETE FROM push_subscriptions WHERE user_id = :u AND device_id = :d"
            " RETURNING endpoint"
        ),
        {"u": user_id, "d": device_id},
    ).scalar()
    if gone is None:
        raise NotFound(f"this device ({device_id}) receives no pushes", field="device_id")
    _drop_waiting(conn, gone, "the user turned pushes off on this device")


def by_endpoint(conn: Connection, endpoint: str) -> Subscription | None:
    """Return the subscription at `endpoint`, or None once it was removed."""
    row = (
        conn.execute(text("SELECT * FROM push_subscriptions WHERE endpoint = :e"), {"e": endpoint})
        .mappings()
        .one_or_none()
    )
    return None if row is None else Subscription.model_validate(dict(row))


def remove_gone(conn: Connection, endpoint: str, reason: str) -> int:
    """Delete the subscription the push service says is gone; fail its waiting messages.

    Returns how many waiting messages were failed with `reason` (they could never arrive).
    """
    conn.execute(text("DELETE FROM push_subscriptions WHERE endpoint = :e"), {"e": endpoint})
    return _drop_waiting(conn, endpoint, reason)


def _drop_waiting(conn: Connection, endpoint: str, reason: str) -> int:
    return len(
        conn.execute(
            text(
                "UPDATE notification_outbox SET status = 'failed', last_error = :r"
                " WHERE channel = 'push' AND target = :e AND status = 'pending' RETURNING id"
            ),
            {"e": endpoint, "r": reason},
        ).all()
    )


def mark_delivered(conn: Connection, endpoint: str) -> None:
    """Note that the push service took a message for this subscription."""
    conn.execute(
        text("UPDATE push_subscriptions SET last_sent_at = now() WHERE endpoint = :e"),
        {"e": endpoint},
    )


def recipients(conn: Connection, events: list[dict[str, Any]]) -> dict[int, list[Subscription]]:
    """Return, per event seq, the subscriptions of the users who want that alert pushed.

    `events` are alert events with seq, kind and location_id. A user hears an alert when
    they are active, the kind's push preference is on (default on), and the alert is at
    one of their chosen locations, or, having chosen none, at their home location, or,
    having no home location either (a regional manager), anywhere.
    """
    if not events:
        return {}
    rows = conn.execute(
        text(
            "SELECT e.seq, s.*"
            " FROM jsonb_to_recordset(CAST(:events AS jsonb))"
            "   AS e(seq bigint, kind text, location_id bigint)"
            " JOIN push_subscriptions s ON true"
            " JOIN users u ON u.id = s.user_id AND u.active AND u.role <> 'system'"
            " LEFT JOIN user_preferences p ON p.user_id = u.id"
            " WHERE CASE e.kind"
            "   WHEN 'overdue_escalated' THEN coalesce(p.push_overdue, true)"
            "   WHEN 'conflict_detected' THEN coalesce(p.push_conflicts, true)"
            "   WHEN 'conflict_escalated' THEN coalesce(p.push_conflicts, true)"
            "   WHEN 'status_changed' THEN coalesce(p.push_rollbacks, true)"
            "   ELSE false END"
            "  AND CASE WHEN cardinality(coalesce(p.location_ids, '{}')) > 0"
            "   THEN e.location_id = ANY(p.location_ids)"
            "   WHEN u.home_location_id IS NOT NULL THEN e.location_id = u.home_location_id"
            "   ELSE true END"
            " ORDER BY e.seq, s.id"
        ),
        {
            "events": _json(
                [
                    {"seq": e["seq"], "kind": e["kind"], "location_id": e.get("location_id")}
                    for e in events
                ]
            )
        },
    ).mappings()
    out: dict[int, list[Subscription]] = {}
    for r in rows:
        row = dict(r)
        seq = row.pop("seq")
        out.setdefault(seq, []).append(Subscription.model_validate(row))
    return out


def _json(value: Any) -> str:
    from db.events import to_json

    return to_json(value)
