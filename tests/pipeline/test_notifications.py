"""Notifications: alert events → outbox → e-mail and webhook, against real local servers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text

from db import audit, conflicts, notifications, overdue, status
from db.errors import InvalidInput, NotFound
from db.events import emit, latest_seq
from db.fleet import Vehicle
from fleet.settings import Settings
from pipeline.notify import (
    DeliveryError,
    DeliverySummary,
    deliver_notifications,
    post_webhook,
)
from tests.conftest import World, add_vehicle, build_world
from tests.db.factories import booking, rental_under_way
from tests.pipeline.sinks import SmtpSink, WebhookSink, closed_port

BERLIN = ZoneInfo("Europe/Berlin")
OPS = "ops@example.com"


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def webhook() -> Iterator[WebhookSink]:
    sink = WebhookSink().start()
    yield sink
    sink.stop()


def _late_rental(
    engine: Engine, plate: str, *, late: timedelta, world: World | None = None
) -> tuple[World, Vehicle]:
    """A committed world with Alice's rental of `plate` due back `late` before world.now."""
    with engine.begin() as c:
        world = world or build_world(c)
        v = add_vehicle(c, world, plate)
        rental_under_way(c, world, v, start=world.at(-30), end=world.now - late)
    return world, v


def _refresh_overdue(engine: Engine, now: datetime) -> None:
    with engine.begin() as c:
        overdue.refresh_overdue(c, now=now)


def _outbox(engine: Engine) -> list[notifications.Outbox]:
    with engine.connect() as c:
        rows = c.execute(text("SELECT * FROM notification_outbox ORDER BY id")).mappings()
        return [notifications.Outbox.model_validate(dict(r)) for r in rows]


def _summary(engine: Engine, **kwargs) -> dict:
    with engine.connect() as c:
        return notifications.outbox_summary(c, **kwargs)


def test_overdue_two_hours_sends_one_email_and_one_webhook_and_never_again(
    committed, smtp, webhook
):
    world, _ = _late_rental(committed, "B AB 1234", late=timedelta(hours=2, minutes=15))
    _refresh_overdue(committed, world.now)
    settings = Settings(
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_from="fleet@example.com",
        notify_email_to=[OPS],
        notify_webhook_urls=[webhook.url],
    )

    summary = deliver_notifications(committed, settings, now=world.now)

    assert summary == DeliverySummary(enqueued=2, sent=2, retried=0, failed=0)
    subject = "Overdue level 2: B AB 1234 (Alice Schmidt), 2 h 15 min late, est. fee 36.00"
    expected_local = (world.now - timedelta(hours=2, minutes=15)).astimezone(BERLIN)
    [mail] = smtp.messages
    assert (mail.mail_from, mail.rcpt_tos) == ("fleet@example.com", [OPS])
    assert mail.message["Subject"] == subject
    assert (mail.message["From"], mail.message["To"]) == ("fleet@example.com", OPS)
    assert mail.message.get_content_type() == "text/plain"
    text_body = mail.message.get_content()
    assert "B AB 1234" in text_body and "+49 30 1234567" in text_body
    assert f"expected return local: {expected_local.isoformat(timespec='minutes')}" in text_body

    [post] = webhook.requests
    body = post.json()
    assert post.headers["Content-Type"] == "application/json"
    seq = body["event_seq"]
    assert post.headers["Idempotency-Key"] == body["dedupe_key"]
    assert body["dedupe_key"] == f"event:{seq}:webhook:{webhook.url}"
    assert body["subject"] == subject
    assert (body["kind"], body["plate"], body["escalation_level"]) == (
        "overdue_escalated",
        "B AB 1234",
        2,
    )
    assert (body["overdue_minutes"], body["estimated_late_fee"]) == (135, "36.00")
    assert body["expected_return_local"] == expected_local.isoformat(timespec="minutes")
    assert (body["location_code"], body["time_zone"]) == ("BER1", "Europe/Berlin")
    assert body["customer_email"] == "alice@example.com"
    assert [(o.channel, o.status, o.attempts) for o in _outbox(committed)] == [
        ("email", "sent", 1),
        ("webhook", "sent", 1),
    ]

    # Refreshing again at the same level and delivering again sends nothing more.
    _refresh_overdue(committed, world.at(0.5))
    again = deliver_notifications(committed, settings, now=world.at(0.5))
    assert again == DeliverySummary()
    assert (len(smtp.messages), len(webhook.requests)) == (1, 1)

    # Climbing to level 3 is a new alert, sent once more to each destination.
    _refresh_overdue(committed, world.at(4))
    later = deliver_notifications(committed, settings, now=world.at(4))
    assert later == DeliverySummary(enqueued=2, sent=2)
    assert smtp.messages[-1].message["Subject"].startswith("Overdue level 3: B AB 1234")
    assert webhook.requests[-1].json()["escalation_level"] == 3


def test_level_one_overdue_sends_nothing_but_is_passed_by_the_watermark(committed, smtp, webhook):
    world, _ = _late_rental(committed, "B AB 30", late=timedelta(minutes=30))
    _refresh_overdue(committed, world.now)
    settings = Settings(
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        notify_email_to=[OPS],
        notify_webhook_urls=[webhook.url],
    )

    summary = deliver_notifications(committed, settings, now=world.now)

    assert summary == DeliverySummary()
    assert smtp.messages == [] and webhook.requests == []
    with committed.connect() as c:
        level = c.execute(
            text(
                "SELECT payload ->> 'escalation_level' FROM availability_events"
                " WHERE kind = 'overdue_escalated'"
            )
        ).scalar_one()
        assert level == "1"  # the event exists; it is just below the alert level
        assert notifications.watermark(c) == latest_seq(c) > 0


def test_webhook_failing_twice_is_retried_with_backoff_and_delivered_once(committed, webhook):
    world, _ = _late_rental(committed, "B WH 1", late=timedelta(hours=3))
    _refresh_overdue(committed, world.now)
    webhook.fail_first = 2
    settings = Settings(notify_webhook_urls=[webhook.url], notify_max_attempts=5)
    t = world.now

    first = deliver_notifications(committed, settings, now=t)
    assert first == DeliverySummary(enqueued=1, retried=1)
    [row] = _outbox(committed)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at == t + timedelta(seconds=30)
    assert "answered 500" in row.last_error and "receiver is down" in row.last_error

    # Before the backoff is over nothing is tried.
    assert deliver_notifications(committed, settings, now=t + timedelta(seconds=29)) == (
        DeliverySummary()
    )
    assert len(webhook.requests) == 1

    second_at = t + timedelta(seconds=30)
    assert deliver_notifications(committed, settings, now=second_at).retried == 1
    [row] = _outbox(committed)
    assert row.next_attempt_at == second_at + timedelta(seconds=60)  # doubled

    third_at = second_at + timedelta(seconds=60)
    assert deliver_notifications(committed, settings, now=third_at) == DeliverySummary(sent=1)

    [row] = _outbox(committed)
    assert (row.status, row.attempts, row.last_error, row.sent_at) == ("sent", 3, None, third_at)
    assert len(webhook.requests) == 3 and len(webhook.delivered) == 1
    assert {r.headers["Idempotency-Key"] for r in webhook.requests} == {row.dedupe_key}
    assert deliver_notifications(committed, settings, now=t + timedelta(days=1)) == (
        DeliverySummary()
    )
    assert len(webhook.requests) == 3


def test_smtp_relay_down_is_retried_then_failed_and_reported(committed):
    world, _ = _late_rental(committed, "B SM 1", late=timedelta(hours=3))
    _refresh_overdue(committed, world.now)
    port = closed_port()
    settings = Settings(
        smtp_host="127.0.0.1", smtp_port=port, notify_email_to=[OPS], notify_max_attempts=3
    )
    lines: list[str] = []
    t = world.now

    first = deliver_notifications(committed, settings, now=t, log=lines.append)
    second = deliver_notifications(committed, settings, now=t + timedelta(seconds=30))
    third = deliver_notifications(committed, settings, now=t + timedelta(seconds=90))

    assert first == DeliverySummary(enqueued=1, retried=1)
    assert second == DeliverySummary(retried=1)
    assert third == DeliverySummary(failed=1)
    assert any("attempt 1 of 3" in line and "will retry" in line for line in lines)
    [row] = _outbox(committed)
    assert (row.status, row.attempts, row.sent_at) == ("failed", 3, None)
    assert f"SMTP relay 127.0.0.1:{port} did not take the e-mail to {OPS}" in row.last_error
    assert "refused" in row.last_error.lower()

    report = _summary(committed)
    assert report["counts"] == {"pending": 0, "sending": 0, "sent": 0, "failed": 1}
    assert [(o.id, o.target) for o in report["failed"]] == [(row.id, OPS)]
    # A failed row waits for a human: later runs leave it alone.
    assert deliver_notifications(committed, settings, now=t + timedelta(days=1)) == (
        DeliverySummary()
    )


def test_two_claimers_never_take_the_same_row(committed):
    world, _ = _late_rental(committed, "B CC 1", late=timedelta(hours=3))
    _refresh_overdue(committed, world.now)
    addresses = [f"ops{i}@example.com" for i in range(30)]
    with committed.begin() as c:
        queued = notifications.enqueue_alerts(c, email_to=addresses, webhook_urls=[])
    assert queued == 30

    with committed.connect() as a, committed.connect() as b:
        ta = a.begin()
        first = notifications.claim_due(a, limit=10, now=world.now)
        tb = b.begin()
        # Waiting for a's rows would hang this single thread; fail fast instead.
        b.execute(text("SET LOCAL lock_timeout = '2s'"))
        # a still holds its rows: b skips them instead of waiting or taking them too.
        second = notifications.claim_due(b, limit=100, now=world.now)
        tb.commit()
        ta.commit()

    assert (len(first), len(second)) == (10, 20)
    assert not {o.id for o in first} & {o.id for o in second}
    assert {o.status for o in first + second} == {"sending"}
    assert {o.attempts for o in first + second} == {1}
    with committed.begin() as c:
        assert notifications.claim_due(c, limit=100, now=world.now) == []


def test_many_claimers_at_once_share_the_rows_without_overlap(committed):
    world, _ = _late_rental(committed, "B CC 2", late=timedelta(hours=3))
    _refresh_overdue(committed, world.now)
    with committed.begin() as c:
        notifications.enqueue_alerts(
            c, email_to=[f"ops{i}@example.com" for i in range(60)], webhook_urls=[]
        )
    claimed: list[list[int]] = []
    start = threading.Barrier(4)

    def worker() -> None:
        mine: list[int] = []
        start.wait()
        while True:
            with committed.begin() as c:
                batch = notifications.claim_due(c, limit=3, now=world.now)
            if not batch:
                break
            mine += [o.id for o in batch]
        claimed.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)

    ids = [i for mine in claimed for i in mine]
    assert len(ids) == 60 and len(set(ids)) == 60


def test_a_row_left_sending_is_reported_stuck_and_never_resent(committed, webhook):
    world, _ = _late_rental(committed, "B ST 1", late=timedelta(hours=3))
    _refresh_overdue(committed, world.now)
    settings = Settings(notify_webhook_urls=[webhook.url])
    with committed.begin() as c:
        notifications.enqueue_alerts(c, email_to=[], webhook_urls=[webhook.url])
        # The worker claims and commits, then dies before recording the outcome.
        [claimed] = notifications.claim_due(c, limit=10, now=world.now)

    assert _summary(committed, now=world.now + timedelta(minutes=1))["stuck"] == []
    assert deliver_notifications(committed, settings, now=world.at(1)) == DeliverySummary()
    assert webhook.requests == []
    report = _summary(committed, now=world.at(1))
    assert report["counts"]["sending"] == 1
    assert [o.id for o in report["stuck"]] == [claimed.id]


def test_a_rollback_notifies_but_ordinary_status_changes_do_not(committed, webhook):
    with committed.begin() as c:
        world = build_world(c)
        v = add_vehicle(c, world, "B RB 1")
        wrong = status.change_status(
            c,
            vehicle_id=v.id,
            new_status="maintenance",
            changed_by=world.agent.id,
            reason="brake check",
        )
    with committed.begin() as c:
        audit.rollback_change(
            c, log_id=wrong.log_id, rolled_back_by=world.manager.id, reason="wrong plate"
        )
    settings = Settings(notify_webhook_urls=[webhook.url])

    summary = deliver_notifications(committed, settings, now=world.now)

    assert summary == DeliverySummary(enqueued=1, sent=1)
    [post] = webhook.requests
    body = post.json()
    assert body["subject"] == (
        "Status rolled back: B RB 1 maintenance → available at BER1 by Maria Manager"
    )
    assert (body["kind"], body["reverts_log_id"], body["changed_by"]) == (
        "status_changed",
        wrong.log_id,
        "Maria Manager",
    )
    assert body["reason"] == f"rollback of #{wrong.log_id}: wrong plate"


def test_a_new_conflict_notifies_and_again_when_it_turns_critical(committed, smtp):
    with committed.begin() as c:
        world = build_world(c)
        late = add_vehicle(c, world, "B CF 1")
        rental_under_way(c, world, late, start=world.at(-26), end=world.at(-1))
        nxt = booking(c, world, late, start=world.at(12), end=world.at(20))
    settings = Settings(smtp_host="127.0.0.1", smtp_port=smtp.port, notify_email_to=[OPS])
    pickup = world.at(12).astimezone(BERLIN).isoformat(timespec="minutes").replace("T", " ")

    with committed.begin() as c:
        conflicts.refresh_conflicts(c, now=world.now)
    first = deliver_notifications(committed, settings, now=world.now)

    assert first == DeliverySummary(enqueued=1, sent=1)
    [mail] = smtp.messages
    assert mail.message["Subject"] == (
        f"New conflict (warning, overdue return): B CF 1 at BER1, reservation from {pickup}"
        " for Bob Meyer"
    )
    text_body = mail.message.get_content()
    assert f"block id: {nxt.id}" in text_body
    assert "cause: the car is not back from its rental" in text_body

    with committed.begin() as c:
        conflicts.refresh_conflicts(c, now=world.at(10.5))  # pickup 1.5 h away
    second = deliver_notifications(committed, settings, now=world.at(10.5))

    assert second == DeliverySummary(enqueued=1, sent=1)
    assert (
        smtp.messages[-1]
        .message["Subject"]
        .startswith("Conflict now critical (critical, overdue return): B CF 1")
    )


def test_an_alert_event_with_an_odd_payload_still_notifies_and_does_not_block(committed, webhook):
    with committed.begin() as c:
        world = build_world(c)
        v = add_vehicle(c, world, "B OD 99")
        emit(c, kind="overdue_escalated", vehicle_id=v.id, payload={"escalation_level": 3})
    _late_rental(committed, "B OD 100", late=timedelta(hours=3), world=world)
    _refresh_overdue(committed, world.now)
    settings = Settings(notify_webhook_urls=[webhook.url])

    assert deliver_notifications(committed, settings, now=world.now) == DeliverySummary(
        enqueued=2, sent=2
    )

    odd, good = (r.json() for r in webhook.requests)
    assert odd["subject"] == f"Alert overdue_escalated: vehicle {v.id} (see details)"
    assert odd["payload"] == {"escalation_level": 3} and "KeyError" in odd["note"]
    assert good["subject"].startswith("Overdue level 2: B OD 100")


def test_smtp_login_is_used_when_a_username_is_set(committed):
    world, _ = _late_rental(committed, "B LG 1", late=timedelta(hours=3))
    _refresh_overdue(committed, world.now)
    sink = SmtpSink(credentials=("fleet", "s3cret")).start()
    try:
        base = {"smtp_host": "127.0.0.1", "smtp_port": sink.port, "notify_email_to": [OPS]}
        wrong = Settings(**base, smtp_username="fleet", smtp_password="nope")
        assert deliver_notifications(committed, wrong, now=world.now).retried == 1
        assert "authentication" in _outbox(committed)[0].last_error.lower()

        right = Settings(**base, smtp_username="fleet", smtp_password="s3cret")
        later = world.now + timedelta(minutes=1)
        assert deliver_notifications(committed, right, now=later) == DeliverySummary(sent=1)
        assert sink.logins == ["fleet"] and len(sink.messages) == 1
    finally:
        sink.stop()


def _message(url: str) -> notifications.Outbox:
    return notifications.Outbox(
        id=1,
        dedupe_key=f"event:1:webhook:{url}",
        channel="webhook",
        target=url,
        subject="test",
        body={"subject": "test"},
        event_seq=1,
        status="sending",
        attempts=1,
        next_attempt_at=datetime.now().astimezone(),
        last_error=None,
        created_at=datetime.now().astimezone(),
        sent_at=None,
    )


@pytest.mark.parametrize(("code", "words"), [(404, "answered 404"), (302, "answered 302")])
def test_a_webhook_that_answers_other_than_2xx_is_a_failure(code, words):
    sink = WebhookSink(status=code).start()
    try:
        with pytest.raises(DeliveryError, match=words):
            post_webhook(sink.url, _message(sink.url))
        assert [r.path for r in sink.requests] == ["/hooks/fleet"]  # a redirect is not followed
    finally:
        sink.stop()


def test_an_unreachable_webhook_says_so():
    url = f"http://127.0.0.1:{closed_port()}/hook"
    with pytest.raises(DeliveryError, match="could not be reached"):
        post_webhook(url, _message(url))


@pytest.mark.parametrize(
    ("email_to", "urls", "field"),
    [
        (["not-an-address"], [], "notify_email_to"),
        (["ops@example.com, boss@example.com"], [], "notify_email_to"),
        ([], ["ftp://example.com/hook"], "notify_webhook_urls"),
        ([], ["hooks.example.com/fleet"], "notify_webhook_urls"),
    ],
)
def test_bad_destinations_are_refused_with_what_to_fix(conn, email_to, urls, field):
    with pytest.raises(InvalidInput) as err:
        notifications.enqueue_alerts(conn, email_to=email_to, webhook_urls=urls)
    assert err.value.field == field
    assert (email_to or urls)[0] in err.value.message
    assert "FLEET_NOTIFY" in err.value.hint


def test_email_recipients_without_an_smtp_relay_are_refused(committed):
    settings = Settings(notify_email_to=[OPS])
    with pytest.raises(InvalidInput, match="FLEET_SMTP_HOST is not set"):
        deliver_notifications(committed, settings)


def test_outcomes_only_for_claimed_rows_and_sane_limits(conn):
    row_id = conn.execute(
        text(
            "INSERT INTO notification_outbox (dedupe_key, channel, target, subject, body)"
            " VALUES ('k1', 'email', 'ops@example.com', 's', '{}') RETURNING id"
        )
    ).scalar_one()
    with pytest.raises(InvalidInput, match="is pending, not being sent"):
        notifications.mark_sent(conn, row_id)
    with pytest.raises(NotFound):
        notifications.mark_failed(conn, 999_999, "boom", max_attempts=3)
    with pytest.raises(InvalidInput, match="max_attempts"):
        notifications.mark_failed(conn, row_id, "boom", max_attempts=0)
    with pytest.raises(InvalidInput, match="limit"):
        notifications.claim_due(conn, limit=0)
    with pytest.raises(InvalidInput, match="time zone"):
        notifications.claim_due(conn, limit=1, now=datetime(2026, 1, 1))


def test_backoff_doubles_and_is_capped_at_an_hour(conn):
    conn.execute(
        text(
            "INSERT INTO notification_outbox (dedupe_key, channel, target, subject, body)"
            " VALUES ('k2', 'webhook', 'http://example.com/h', 's', '{}')"
        )
    )
    t = datetime.now(BERLIN) + timedelta(hours=1)
    waits = []
    for _ in range(9):
        [row] = notifications.claim_due(conn, limit=1, now=t + timedelta(days=1))
        notifications.mark_failed(conn, row.id, "down", max_attempts=100, now=t)
        nxt = conn.execute(
            text("SELECT next_attempt_at FROM notification_outbox WHERE id = :i"), {"i": row.id}
        ).scalar_one()
        waits.append(int((nxt - t).total_seconds()))
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
