"""Delivering alert notifications from the outbox: e-mail, JSON webhooks and Web Push.

Plain functions; the Prefect flow only calls `deliver_notifications`. Every message goes
through the outbox in `db/notifications.py`, so each alert reaches each destination at most
once even when runs overlap, crash or are retried.
"""

from __future__ import annotations

import hashlib
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import requests
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush
from sqlalchemy import Engine

from db import push
from db.errors import InvalidInput
from db.notifications import (
    Outbox,
    check_destinations,
    claim_due,
    enqueue_alerts,
    mark_failed,
    mark_sent,
)
from fleet import vapid
from fleet.settings import Settings


class DeliveryError(Exception):
    """A message could not be handed over; the text says to whom and why."""


class PushGone(DeliveryError):
    """The push service says the subscription no longer exists (404 or 410)."""


@dataclass
class DeliverySummary:
    """What one delivery run did."""

    enqueued: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    gone: int = 0  # push subscriptions removed because their push service said gone

    def describe(self) -> str:
        """Say what the run did in a sentence, for the flow's log."""
        if not (self.enqueued or self.sent or self.retried or self.failed or self.gone):
            return "nothing to send"
        text = (
            f"{self.enqueued:,} notifications queued, {self.sent:,} sent,"
            f" {self.retried:,} to try again, {self.failed:,} given up"
        )
        if self.gone:
            text += f", {self.gone:,} push subscriptions gone"
        return text


def render_text(message: Outbox) -> str:
    """Return the plain-text e-mail body: the subject, then one fact per line."""
    lines = [message.subject, ""]
    for key, value in message.body.items():
        if key == "subject" or value is None:
            continue
        lines.append(f"{key.replace('_', ' ')}: {value}")
    lines += ["", f"-- fleet notifications ({message.dedupe_key})"]
    return "\n".join(lines) + "\n"


def build_email(settings: Settings, message: Outbox) -> EmailMessage:
    """Return the e-mail for one outbox row."""
    # Python's default 78-column folding mangles subjects with parentheses (a stray line
    # break before the text); RFC 5322 allows 998, and alert subjects are one short line.
    email = EmailMessage(policy=policy.SMTP.clone(max_line_length=998))
    # Header values must be one line; a stray newline in a customer name would break it.
    email["Subject"] = " ".join(message.subject.split())
    email["From"] = settings.smtp_from
    email["To"] = message.target
    email["Date"] = formatdate(usegmt=True)
    # Derived from the dedupe key, so a copy a human re-queues is recognisable as the same.
    digest = hashlib.sha256(message.dedupe_key.encode()).hexdigest()[:32]
    email["Message-ID"] = f"<{digest}@fleet-notifications>"
    email.set_content(render_text(message))
    return email


def send_email(settings: Settings, message: Outbox, *, timeout: float = 30.0) -> None:
    """Hand one e-mail to the SMTP relay in settings; raise DeliveryError if it is not taken."""
    if not settings.smtp_host:
        raise DeliveryError(
            f"cannot e-mail {message.target}: FLEET_SMTP_HOST is not set (name the SMTP relay)"
        )
    email = build_email(settings, message)
    where = f"SMTP relay {settings.smtp_host}:{settings.smtp_port}"
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password or "")
            smtp.send_message(email)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"{where} did not take the e-mail to {message.target}: {exc}") from exc


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would re-send a redirected POST as a bodiless GET and report success; a
    # redirect is a misconfigured URL and must show up as a failure instead.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def webhook_payload(message: Outbox) -> dict[str, Any]:
    """Return the JSON a webhook receives: the alert's facts plus its dedupe key."""
    return {**message.body, "dedupe_key": message.dedupe_key}


def post_webhook(url: str, message: Outbox, timeout: float = 10) -> int:
    """POST the alert as JSON; return the HTTP status, or raise DeliveryError unless 2xx.

    The Idempotency-Key header carries the dedupe key, so a receiver can drop a repeat.
    """
    check_destinations([], [url])
    request = urllib.request.Request(
        url,
        data=json.dumps(webhook_payload(message)).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": message.dedupe_key,
            "User-Agent": "fleet-notifications",
        },
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode(errors="replace").strip()
        raise DeliveryError(
            f"webhook {url} answered {exc.code} {exc.reason}" + (f": {detail}" if detail else "")
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"webhook {url} could not be reached: {reason}") from exc
    if not 200 <= status < 300:
        raise DeliveryError(f"webhook {url} answered {status}, expected 2xx")
    return status


# Most push services cap the encrypted payload at 4 KB; the text is cut well before that.
MAX_PUSH_TEXT = 300


def push_payload(message: Outbox) -> dict[str, Any]:
    """Return what the counter app's service worker shows: title, text, where a tap goes."""
    b = message.body
    kind = b.get("kind")
    level = b.get("escalation_level")
    if kind == "overdue_escalated":
        text = f"{b.get('vehicle')}; due back {_short(b.get('expected_return_local'))}"
        if b.get("customer_phone"):
            text += f"; call {b['customer_phone']}"
    elif kind in ("conflict_detected", "conflict_escalated"):
        text = str(b.get("cause") or "")
    elif kind == "status_changed":
        text = f"Reason: {b.get('reason')}" if b.get("reason") else ""
    else:
        text = str(b.get("note") or "")
    vehicle = b.get("vehicle_id")
    return {
        "title": message.subject[:MAX_PUSH_TEXT],
        "body": text[:MAX_PUSH_TEXT],
        # One notification per rental or vehicle on the device: a later level replaces it.
        "tag": _topic(message),
        "url": f"/counter/#/vehicle/{vehicle}" if vehicle else "/counter/#/overdue",
        "kind": kind,
        "level": level,
        "severity": b.get("severity"),
        "vehicle_id": vehicle,
        "event_seq": message.event_seq,
    }


def _short(local_iso: str | None) -> str:
    return (local_iso or "?")[:16].replace("T", " ")


def _topic(message: Outbox) -> str:
    # RFC 8030 Topic: at most 32 URL-safe characters; a newer message with the same topic
    # replaces one the push service still holds for an offline device.
    b = message.body
    if b.get("block_id") is not None:
        return f"{str(b.get('kind'))[:10]}-{b['block_id']}"[:32]
    return f"vehicle-{b.get('vehicle_id')}"[:32]


def _urgent(message: Outbox) -> bool:
    b = message.body
    return (b.get("escalation_level") or 0) >= 3 or b.get("severity") == "critical"


def push_session() -> requests.Session:
    """An HTTP session for push services; one per delivery run keeps their connections open."""
    session = requests.Session()
    # A redirect is a misconfigured or hostile endpoint, never a delivery.
    session.max_redirects = 0
    return session


def send_push(
    settings: Settings,
    message: Outbox,
    subscription: push.Subscription,
    *,
    signer: Vapid02 | None = None,
    session: requests.Session | None = None,
    timeout: float = 10.0,
) -> None:
    """Encrypt the alert for one device (aes128gcm) and hand it to its push service.

    Raises PushGone when the service says the subscription is gone, DeliveryError otherwise.
    """
    where = f"push service {subscription.push_service}"
    own = session is None
    session = session or push_session()
    try:
        webpush(
            subscription.info,
            json.dumps(push_payload(message), separators=(",", ":"), default=str),
            vapid_private_key=signer or vapid.vapid(settings),
            vapid_claims={"sub": vapid.subject(settings)},
            content_encoding="aes128gcm",
            ttl=settings.push_ttl_seconds,
            timeout=timeout,
            headers={
                "Urgency": "high" if _urgent(message) else "normal",
                "Topic": _topic(message),
            },
            requests_session=session,
        )
    except WebPushException as exc:
        response = exc.response
        code = getattr(response, "status_code", None)
        detail = (getattr(response, "text", "") or "").strip()[:300]
        text = f"{where} answered {code}" + (f": {detail}" if detail else "")
        if code in (404, 410):
            raise PushGone(text) from exc
        raise DeliveryError(text if code else f"{where}: {exc}") from exc
    except requests.RequestException as exc:
        raise DeliveryError(f"{where} could not be reached: {exc}") from exc
    finally:
        if own:
            session.close()


def send(
    settings: Settings,
    message: Outbox,
    *,
    subscription: push.Subscription | None = None,
    signer: Vapid02 | None = None,
    session: requests.Session | None = None,
) -> None:
    """Deliver one outbox row over its channel.

    A push row goes to `subscription`, the device's current one; None means it was removed
    meanwhile (pushes turned off, or the service said gone): PushGone, nobody to deliver to.
    """
    if message.channel == "email":
        send_email(settings, message)
    elif message.channel == "webhook":
        post_webhook(message.target, message)
    elif message.channel == "push":
        if subscription is None:
            raise PushGone("the device's push subscription was removed")
        send_push(settings, message, subscription, signer=signer, session=session)
    else:
        raise DeliveryError(f"no sender for channel {message.channel!r}")


def deliver_notifications(
    engine: Engine,
    settings: Settings,
    *,
    batch_size: int = 100,
    now: datetime | None = None,
    log: Callable[[str], Any] | None = None,
) -> DeliverySummary:
    """Queue new alerts, then send every due notification and record each outcome.

    Transactions stay short: queueing is one, each batch claim is one (committed before
    sending, so 'sending' is on record if the process dies), and each outcome is one, so a
    crash leaves at most the claimed batch for a human to check. One message failing never
    stops the others; it is retried with backoff until settings.notify_max_attempts.
    """
    say = log or (lambda _line: None)
    if batch_size < 1:
        raise InvalidInput("batch_size must be at least 1", field="batch_size")
    if settings.notify_email_to and not settings.smtp_host:
        raise InvalidInput(
            "FLEET_NOTIFY_EMAIL_TO names recipients but FLEET_SMTP_HOST is not set",
            field="smtp_host",
            hint="set FLEET_SMTP_HOST (and FLEET_SMTP_PORT) to your SMTP relay,"
            " or clear FLEET_NOTIFY_EMAIL_TO",
        )
    summary = DeliverySummary()
    # Made when the first push is due: the key is read once, connections are reused.
    signer: Vapid02 | None = None
    session: requests.Session | None = None
    with engine.begin() as conn:
        summary.enqueued = enqueue_alerts(
            conn, email_to=settings.notify_email_to, webhook_urls=settings.notify_webhook_urls
        )
    if summary.enqueued:
        say(f"queued {summary.enqueued} new notification(s)")
    while True:
        with engine.begin() as conn:
            batch = claim_due(conn, limit=batch_size, now=now)
        if not batch:
            break
        for message in batch:
            error, gone, subscription = None, False, None
            try:
                if message.channel == "push":
                    with engine.connect() as conn:
                        subscription = push.by_endpoint(conn, message.target)
                    signer = signer or vapid.vapid(settings)
                    session = session or push_session()
                send(settings, message, subscription=subscription, signer=signer, session=session)
            except PushGone as exc:
                error, gone = f"{type(exc).__name__}: {exc}", True
            except Exception as exc:  # one bad message or receiver must not stop the rest
                error = f"{type(exc).__name__}: {exc}"
            with engine.begin() as conn:
                if error is None:
                    mark_sent(conn, message.id, now=now)
                    if subscription is not None:
                        push.mark_delivered(conn, message.target)
                    summary.sent += 1
                    continue
                if gone and subscription is not None:
                    # The device unsubscribed or was reset: retrying can never deliver, so
                    # the subscription goes, and every message still waiting for it.
                    push.remove_gone(conn, message.target, error)
                    summary.gone += 1
                    say(
                        f"removed the push subscription of user {subscription.user_id}"
                        f" on device {subscription.device_id}: {error}"
                    )
                status = mark_failed(
                    conn,
                    message.id,
                    error,
                    # Nothing to retry once the subscription is gone.
                    max_attempts=1 if gone else settings.notify_max_attempts,
                    now=now,
                )
            if status == "failed":
                summary.failed += 1
                say(
                    f"gave up on #{message.id} {message.channel} to {message.target} after"
                    f" {message.attempts} attempt(s): {error}"
                )
            else:
                summary.retried += 1
                say(
                    f"#{message.id} {message.channel} to {message.target} failed"
                    f" (attempt {message.attempts} of {settings.notify_max_attempts}),"
                    f" will retry: {error}"
                )
    say(
        f"notifications: {summary.sent} sent, {summary.retried} to retry,"
        f" {summary.failed} failed, {summary.gone} push subscription(s) gone"
    )
    if session is not None:
        session.close()
    return summary
