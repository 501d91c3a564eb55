"""Notifications: alert events become outbox rows, one per destination, delivered at most once.

The flow reads committed events past a watermark, turns the ones staff must hear about
into outbox rows (`dedupe_key` unique, so a re-run never queues an alert twice), and a
worker claims due rows, sends them and records the outcome. Sending lives in
`pipeline/notify.py`; this module only reads and writes the tables and never commits.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, TypeAdapter
from sqlalchemy import Connection, text

from db import push
from db.errors import InvalidInput, NotFound
from db.events import to_json
from db.timeutil import local_iso, require_aware

WATERMARK = "notifications.seq"

# Which events notify. Overdue alerts only from level 2 on ("vehicles overdue by 2+ hours";
# level 2 begins at 120 min with the default thresholds); a status change only when it is a
# rollback, i.e. someone undid a wrong change on the board.
ALERT_KINDS: dict[str, str] = {
    "overdue_escalated": "an overdue rental reached escalation level 2 or higher",
    "conflict_detected": "a booking its vehicle cannot honour was found",
    "conflict_escalated": "a known conflict became critical (pickup within 2 h)",
    "status_changed": "a status change was rolled back",
}
MIN_OVERDUE_LEVEL = 2

CHANNELS = ("email", "webhook", "push")
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
STUCK_AFTER = timedelta(minutes=10)
MAX_ERROR_CHARS = 2000

_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")
_DURATION = TypeAdapter(timedelta)


class Outbox(BaseModel):
    """One alert for one destination, and how its delivery is going (a notification_outbox row)."""

    id: int
    dedupe_key: str
    channel: str
    target: str
    subject: str
    body: dict[str, Any]
    event_seq: int | None
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


def check_destinations(email_to: list[str], webhook_urls: list[str]) -> None:
    """Raise InvalidInput naming the first e-mail address or webhook URL that cannot work."""
    for address in email_to:
        if not _EMAIL.match(address.strip()):
            raise InvalidInput(
                f"not an e-mail address: {address!r}",
                field="notify_email_to",
                hint="give plain addresses, e.g. FLEET_NOTIFY_EMAIL_TO='[\"ops@example.com\"]'",
            )
    for url in webhook_urls:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(
                f"not an http(s) webhook URL: {url!r}",
                field="notify_webhook_urls",
                hint="give full URLs such as"
                " FLEET_NOTIFY_WEBHOOK_URLS='[\"https://hooks.example.com/fleet\"]'",
            )


def watermark(conn: Connection) -> int:
    """Return the seq of the last event already turned into notifications (0 before any)."""
    value = conn.execute(
        text("SELECT value #>> '{}' FROM pipeline_state WHERE name = :n"), {"n": WATERMARK}
    ).scalar()
    return int(value) if value is not None else 0


def enqueue_alerts(
    conn: Connection, *, email_to: list[str], webhook_urls: list[str], limit: int = 5000
) -> int:
    """Queue one outbox row per alert event and destination; return how many were queued.

    Destinations are the configured e-mail addresses and webhooks, plus the push
    subscriptions of every user who wants that alert on their devices (db/push.py).
    Reads at most `limit` committed events past the watermark, then moves the watermark past
    all of them, alerts or not. With no destinations configured the events are still passed:
    alerts from a time nobody was listening are not sent later, when they are stale.
    """
    if limit < 1:
        raise InvalidInput("limit must be at least 1", field="limit")
    check_destinations(email_to, webhook_urls)
    destinations = [("email", a.strip()) for a in dict.fromkeys(email_to)] + [
        ("webhook", u.strip()) for u in dict.fromkeys(webhook_urls)
    ]
    # The row lock makes concurrent runs take turns; each then reads past the other's mark.
    conn.execute(
        text(
            "INSERT INTO pipeline_state (name, value) VALUES (:n, '0'::jsonb)"
            " ON CONFLICT (name) DO NOTHING"
        ),
        {"n": WATERMARK},
    )
    after = int(
        conn.execute(
            text("SELECT value #>> '{}' FROM pipeline_state WHERE name = :n FOR UPDATE"),
            {"n": WATERMARK},
        ).scalar_one()
    )
    # Only committed events have a seq, and they always form a prefix (migration 0002), so
    # nothing that commits later can land below the new watermark.
    upto = conn.execute(
        text(
            "SELECT max(seq) FROM (SELECT seq FROM availability_events WHERE seq > :after"
            " ORDER BY seq LIMIT :limit) batch"
        ),
        {"after": after, "limit": limit},
    ).scalar()
    if upto is None:
        return 0
    events = conn.execute(
        text(
            "SELECT e.seq, e.id, e.kind, e.vehicle_id, e.location_id, e.payload, e.created_at,"
            " l.code AS event_location_code, l.time_zone AS event_time_zone,"
            " u.full_name AS actor_name, g.reverts_log_id,"
            " g.metadata ->> 'reverts' AS reverts_from_metadata"
            " FROM availability_events e"
            " LEFT JOIN locations l ON l.id = e.location_id"
            " LEFT JOIN users u ON u.id = e.actor_id"
            " LEFT JOIN vehicle_status_log g ON e.kind = 'status_changed'"
            # CASE, so a payload that is not what the engine writes cannot fail the query.
            "  AND g.id = CASE WHEN e.payload ->> 'log_id' ~ '^[0-9]{1,18}$'"
            "   THEN CAST(e.payload ->> 'log_id' AS bigint) END"
            " WHERE e.seq > :after AND e.seq <= :upto"
            "  AND (e.kind IN ('conflict_detected', 'conflict_escalated')"
            "   OR (e.kind = 'overdue_escalated'"
            "       AND CASE WHEN e.payload ->> 'escalation_level' ~ '^[0-9]{1,9}$'"
            "        THEN CAST(e.payload ->> 'escalation_level' AS integer) END >= :min_level)"
            # The link survives in metadata when the reverted change is archived (SET NULL).
            "   OR (e.kind = 'status_changed'"
            "       AND (g.reverts_log_id IS NOT NULL OR g.metadata ? 'reverts')))"
            " ORDER BY e.seq"
        ),
        {"after": after, "upto": upto, "min_level": MIN_OVERDUE_LEVEL},
    ).mappings()
    events = [dict(e) for e in events]
    pushes = push.recipients(conn, events)
    rows = []
    for event in events:
        try:
            subject, body = describe(dict(event))
        except (KeyError, TypeError, ValueError) as exc:
            # One event with an unexpected payload must not hold back every later alert.
            subject, body = _undescribed(dict(event), exc)
        for channel, target in destinations:
            rows.append(
                {
                    "dedupe_key": f"event:{event['seq']}:{channel}:{target}",
                    "channel": channel,
                    "target": target,
                    "subject": subject,
                    "body": body,
                    "event_seq": event["seq"],
                }
            )
        # One row per device: the dedupe key names the subscription, not its endpoint, so a
        # re-run after the browser renewed its endpoint still queues nothing twice.
        for sub in pushes.get(event["seq"], []):
            rows.append(
                {
                    "dedupe_key": f"event:{event['seq']}:push:{sub.id}",
                    "channel": "push",
                    "target": sub.endpoint,
                    "subject": subject,
                    "body": body,
                    "event_seq": event["seq"],
                }
            )
    queued = 0
    if rows:
        queued = len(
            conn.execute(
                text(
                    "INSERT INTO notification_outbox"
                    " (dedupe_key, channel, target, subject, body, event_seq)"
                    " SELECT r.dedupe_key, r.channel, r.target, r.subject, r.body, r.event_seq"
                    " FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(dedupe_key text,"
                    " channel text, target text, subject text, body jsonb, event_seq bigint)"
                    " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
                ),
                {"rows": to_json(rows)},
            ).all()
        )
    conn.execute(
        text(
            "UPDATE pipeline_state SET value = to_jsonb(CAST(:seq AS bigint)), updated_at = now()"
            " WHERE name = :n"
        ),
        {"seq": upto, "n": WATERMARK},
    )
    return queued


def describe(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Return the subject line and the JSON facts of one alert event.

    `event` is a row of availability_events with the lot (event_location_code,
    event_time_zone), actor_name and, for status changes, reverts_log_id joined in.
    """
    p = event["payload"]
    kind = event["kind"]
    tz = p.get("time_zone") or event.get("event_time_zone") or "UTC"
    body: dict[str, Any] = {
        "kind": kind,
        "event_seq": event["seq"],
        "event_id": event["id"],
        "occurred_at": event["created_at"].isoformat(),
        "occurred_local": local_iso(event["created_at"], tz),
        "time_zone": tz,
        "vehicle_id": event.get("vehicle_id"),
        "plate": p.get("plate"),
        "location_code": p.get("location_code") or event.get("event_location_code"),
    }
    if kind == "overdue_escalated":
        late = _DURATION.validate_python(p["overdue_by"])
        expected = datetime.fromisoformat(p["expected_return"])
        fee = Decimal(str(p["estimated_late_fee"]))
        body |= {
            "escalation_level": p["escalation_level"],
            "overdue_minutes": int(late.total_seconds() // 60),
            "expected_return": expected.isoformat(),
            "expected_return_local": local_iso(expected, tz),
            "estimated_late_fee": str(fee),
            "block_id": p["block_id"],
            "customer_name": p["customer_name"],
            "customer_phone": p.get("customer_phone"),
            "customer_email": p.get("customer_email"),
            "vehicle": f"{p['make']} {p['model']} ({p['category_code']})",
            "next_block_start_local": local_iso(datetime.fromisoformat(p["next_block_start"]), tz)
            if p.get("next_block_start")
            else None,
        }
        # No currency is stored with the rates, so the fee is shown as the bare amount.
        subject = (
            f"Overdue level {p['escalation_level']}: {p['plate']} ({p['customer_name']}),"
            f" {_lateness(late)} late, est. fee {fee}"
        )
    elif kind in ("conflict_detected", "conflict_escalated"):
        starts = datetime.fromisoformat(p["starts"])
        body |= {
            "conflict": p["conflict"],
            "severity": p["severity"],
            "block_id": p["block_id"],
            "block_kind": p["block_kind"],
            "starts": starts.isoformat(),
            "starts_local": local_iso(starts, tz),
            "cause": p["cause"],
            "customer_name": p.get("customer_name"),
        }
        what = "New conflict" if kind == "conflict_detected" else "Conflict now critical"
        who = f" for {p['customer_name']}" if p.get("customer_name") else ""
        subject = (
            f"{what} ({p['severity']}, {p['conflict'].replace('_', ' ')}): {p['plate']}"
            f" at {body['location_code']}, {p['block_kind']} from {_local_short(starts, tz)}{who}"
        )
    elif kind == "status_changed":
        reverts = event.get("reverts_log_id") or event.get("reverts_from_metadata")
        body |= {
            "log_id": p["log_id"],
            "reverts_log_id": int(reverts) if reverts is not None else None,
            "old_status": p["old_status"],
            "new_status": p["status"],
            "reason": p["reason"],
            "changed_by": event.get("actor_name"),
        }
        where = f" at {body['location_code']}" if body["location_code"] else ""
        subject = (
            f"Status rolled back: {p['plate']} {p['old_status']} → {p['status']}{where}"
            f" by {event.get('actor_name') or 'unknown'}"
        )
    else:
        raise InvalidInput(
            f"event kind {kind!r} does not notify",
            field="kind",
            hint=f"alerts are: {', '.join(ALERT_KINDS)}",
        )
    body["subject"] = subject
    return subject, body


def _undescribed(event: dict[str, Any], error: Exception) -> tuple[str, dict[str, Any]]:
    p = event["payload"] if isinstance(event["payload"], dict) else {}
    plate = p.get("plate") or f"vehicle {event.get('vehicle_id')}"
    subject = f"Alert {event['kind']}: {plate} (see details)"
    body = {
        "kind": event["kind"],
        "event_seq": event["seq"],
        "event_id": event["id"],
        "occurred_at": event["created_at"].isoformat(),
        "vehicle_id": event.get("vehicle_id"),
        "plate": p.get("plate"),
        "location_code": event.get("event_location_code"),
        "payload": event["payload"],
        "note": f"the event could not be summarised ({type(error).__name__}: {error})",
        "subject": subject,
    }
    return subject, body


def _lateness(late: timedelta) -> str:
    hours, minutes = divmod(int(late.total_seconds() // 60), 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


def _local_short(value: datetime, tz: str) -> str:
    return (local_iso(value, tz) or "").replace("T", " ")


def claim_due(conn: Connection, *, limit: int, now: datetime | None = None) -> list[Outbox]:
    """Take up to `limit` due pending rows for sending: mark them 'sending', count the attempt.

    SKIP LOCKED lets several workers claim at once without ever taking the same row; the
    caller commits the claim before sending so 'sending' is on record if the process dies.
    """
    if limit < 1:
        raise InvalidInput("limit must be at least 1", field="limit")
    if now is not None:
        require_aware(now, "now")
    # While a row is 'sending', next_attempt_at holds when the attempt began, which is
    # how outbox_summary tells a stuck send from one in progress.
    rows = conn.execute(
        text(
            "UPDATE notification_outbox o SET status = 'sending', attempts = o.attempts + 1,"
            " next_attempt_at = coalesce(:now, now())"
            " FROM (SELECT id FROM notification_outbox"
            "       WHERE status = 'pending' AND next_attempt_at <= coalesce(:now, now())"
            "       ORDER BY next_attempt_at, id LIMIT :limit FOR UPDATE SKIP LOCKED) due"
            " WHERE o.id = due.id RETURNING o.*"
        ),
        {"now": now, "limit": limit},
    ).mappings()
    return sorted((Outbox.model_validate(dict(r)) for r in rows), key=lambda o: o.id)


def mark_sent(conn: Connection, id: int, *, now: datetime | None = None) -> None:
    """Record that a claimed row was delivered."""
    row = conn.execute(
        text(
            "UPDATE notification_outbox SET status = 'sent', last_error = NULL,"
            " sent_at = coalesce(:now, clock_timestamp())"
            " WHERE id = :id AND status = 'sending' RETURNING id"
        ),
        {"id": id, "now": now},
    ).first()
    if row is None:
        _not_sending(conn, id)


def mark_failed(
    conn: Connection,
    id: int,
    error: str,
    *,
    max_attempts: int,
    now: datetime | None = None,
) -> str:
    """Record a failed attempt; retry later with exponential backoff, or give up.

    The wait after attempt n is 30 s * 2^(n-1), at most 1 h. Once the row has had
    `max_attempts` attempts it is 'failed' and stays for a human. Returns the new status.
    """
    if max_attempts < 1:
        raise InvalidInput(
            "max_attempts must be at least 1",
            field="max_attempts",
            hint="FLEET_NOTIFY_MAX_ATTEMPTS",
        )
    if now is not None:
        require_aware(now, "now")
    row = conn.execute(
        text(
            "UPDATE notification_outbox SET last_error = :error,"
            " status = CASE WHEN attempts >= :max THEN 'failed' ELSE 'pending' END,"
            " next_attempt_at = coalesce(:now, clock_timestamp()) + least("
            "   CAST(:base AS interval) * power(2, least(attempts - 1, 30)),"
            "   CAST(:cap AS interval))"
            " WHERE id = :id AND status = 'sending' RETURNING status"
        ),
        {
            "id": id,
            "error": (error or "unknown error")[:MAX_ERROR_CHARS],
            "max": max_attempts,
            "now": now,
            "base": BACKOFF_BASE,
            "cap": BACKOFF_CAP,
        },
    ).first()
    if row is None:
        _not_sending(conn, id)
    return row.status


def _not_sending(conn: Connection, id: int) -> None:
    status = conn.execute(
        text("SELECT status FROM notification_outbox WHERE id = :id"), {"id": id}
    ).scalar()
    if status is None:
        raise NotFound(f"no notification #{id}", field="id")
    raise InvalidInput(
        f"notification #{id} is {status}, not being sent",
        field="id",
        hint="only rows taken with claim_due can be marked sent or failed",
    )


# There is deliberately no release_stale(): a row left in 'sending' means the process died
# between claiming and recording, possibly after the relay or webhook had already accepted
# the message. Putting it back to 'pending' automatically could deliver the alert twice,
# so outbox_summary lists such rows and a human decides (check the receiver, then requeue
# or mark it sent).


def outbox_summary(
    conn: Connection,
    *,
    now: datetime | None = None,
    stuck_after: timedelta = STUCK_AFTER,
    list_limit: int = 50,
) -> dict[str, Any]:
    """Return counts by status, the oldest due row, and the failed and stuck rows to look at.

    A row is stuck when it has been 'sending' for longer than `stuck_after`.
    """
    counts = {s: 0 for s in ("pending", "sending", "sent", "failed")}
    for status, n in conn.execute(
        text("SELECT status, count(*) FROM notification_outbox GROUP BY status")
    ):
        counts[status] = n
    oldest_pending = conn.execute(
        text("SELECT min(created_at) FROM notification_outbox WHERE status = 'pending'")
    ).scalar()
    failed = conn.execute(
        text(
            "SELECT * FROM notification_outbox WHERE status = 'failed'"
            " ORDER BY id DESC LIMIT :limit"
        ),
        {"limit": list_limit},
    ).mappings()
    stuck = conn.execute(
        text(
            "SELECT * FROM notification_outbox WHERE status = 'sending'"
            " AND next_attempt_at < coalesce(:now, now()) - CAST(:after AS interval)"
            " ORDER BY id LIMIT :limit"
        ),
        {"now": now, "after": stuck_after, "limit": list_limit},
    ).mappings()
    return {
        "counts": counts,
        "oldest_pending_at": oldest_pending,
        "failed": [Outbox.model_validate(dict(r)) for r in failed],
        "stuck": [Outbox.model_validate(dict(r)) for r in stuck],
    }
