"""Web Push: alerts reach staff devices through the outbox, encrypted, signed, sent once.

The push service is a local stand-in (tests/pipeline/sinks.py): a real HTTP server that
answers as FCM or Mozilla would. The test plays the browser: it makes the subscription's
key pair and auth secret and decrypts what arrived with http-ece.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from db import audit, fleet, preferences, push, status
from db.preferences import NotificationPrefs
from fleet import vapid
from fleet.settings import Settings
from pipeline.notify import DeliverySummary, deliver_notifications
from tests.conftest import add_vehicle, build_world
from tests.pipeline.sinks import PushDevice, WebhookSink, vapid_claims
from tests.pipeline.test_notifications import _late_rental, _outbox, _refresh_overdue


@pytest.fixture
def service() -> Iterator[WebhookSink]:
    sink = WebhookSink(status=201).start()
    yield sink
    sink.stop()


@pytest.fixture
def settings(service, tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, push_services=[service.origin])


def _subscribe(
    engine: Engine, service: WebhookSink, user: fleet.User, name: str, settings: Settings
) -> PushDevice:
    device = PushDevice(endpoint=f"{service.origin}/push/{name}")
    with engine.begin() as c:
        push.subscribe(
            c,
            user_id=user.id,
            device_id=f"device-{name}",
            endpoint=device.endpoint,
            device_label=f"{name}'s phone",
            services=settings.push_services,
            **device.keys,
        )
    return device


def _subscriptions(engine: Engine) -> list[str]:
    with engine.connect() as c:
        return list(
            c.execute(text("SELECT device_id FROM push_subscriptions ORDER BY id")).scalars()
        )


def test_an_overdue_escalation_arrives_encrypted_signed_and_only_once(committed, service, settings):
    world, v = _late_rental(committed, "B PU 1", late=timedelta(hours=2, minutes=10))
    phone = _subscribe(committed, service, world.agent, "anna", settings)
    _refresh_overdue(committed, world.now)

    summary = deliver_notifications(committed, settings, now=world.now)

    assert summary == DeliverySummary(enqueued=1, sent=1)
    [request] = service.requests
    assert request.path == "/push/anna"
    assert request.headers["Content-Encoding"] == "aes128gcm"
    assert request.headers["TTL"] == str(6 * 3600)
    assert request.headers["Urgency"] == "normal"  # level 2; level 3+ is "high"
    assert request.headers["Topic"].startswith("overdue_es-")
    assert len(request.headers["Topic"]) <= 32
    # The body is opaque to the push service: nothing of the alert in clear text.
    assert b"B PU 1" not in request.body and b"Alice" not in request.body
    claims = vapid_claims(request, server_key=vapid.application_server_key(settings))
    assert claims["aud"] == service.origin
    assert claims["sub"] == "mailto:fleet@localhost"
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600

    message = phone.decrypt(request.body)
    assert message["title"].startswith("Overdue level 2: B PU 1 (Alice Schmidt), 2 h 10 min late")
    assert message["body"].startswith("VW Golf (ECON); due back ")
    assert message["body"].endswith("; call +49 30 1234567")
    assert (message["kind"], message["level"], message["vehicle_id"]) == (
        "overdue_escalated",
        2,
        v.id,
    )
    assert message["url"] == f"/counter/#/vehicle/{v.id}"
    assert message["tag"] == request.headers["Topic"]
    assert len(request.body) < 4096

    # Sent once: a second run finds nothing new and the row stays sent.
    assert deliver_notifications(committed, settings, now=world.now) == DeliverySummary()
    assert len(service.requests) == 1
    [row] = _outbox(committed)
    assert (row.channel, row.status, row.target, row.attempts) == (
        "push",
        "sent",
        phone.endpoint,
        1,
    )
    with committed.connect() as c:
        [sub] = push.list_for_user(c, user_id=world.agent.id)
    assert sub.last_sent_at is not None


@pytest.mark.parametrize("code", [404, 410])
def test_a_gone_subscription_is_removed_with_every_message_waiting_for_it(
    committed, service, settings, code
):
    world, _ = _late_rental(committed, "B PU 2", late=timedelta(hours=3))
    _late_rental(committed, "B PU 3", late=timedelta(hours=2, minutes=30), world=world)
    gone = _subscribe(committed, service, world.agent, "anna", settings)
    _subscribe(committed, service, world.agent2, "ben", settings)
    service.by_path[gone.endpoint.removeprefix(service.origin)] = code
    _refresh_overdue(committed, world.now)

    summary = deliver_notifications(committed, settings, now=world.now)

    # Two alerts for two devices: Ben's phone gets both; Anna's first answer removes hers,
    # and her second message is failed without another request.
    assert summary == DeliverySummary(enqueued=4, sent=2, failed=2, gone=1)
    assert [r.path for r in service.requests].count("/push/anna") == 1
    assert [r.path for r in service.delivered] == ["/push/ben", "/push/ben"]
    assert _subscriptions(committed) == ["device-ben"]
    anna = [o for o in _outbox(committed) if o.target == gone.endpoint]
    assert [o.status for o in anna] == ["failed", "failed"]
    first, second = anna
    assert f"push service {service.origin} answered {code}" in first.last_error
    # Claimed in the same batch; by its turn the subscription was gone, so no request.
    assert "subscription was removed" in second.last_error
    # Nothing left for a retry to send.
    assert deliver_notifications(committed, settings, now=world.at(2)) == DeliverySummary()


def test_a_push_service_error_retries_with_backoff_and_keeps_the_subscription(committed, settings):
    flaky = WebhookSink(fail_first=1, status=201).start()
    try:
        settings = settings.model_copy(update={"push_services": [flaky.origin]})
        world, _ = _late_rental(committed, "B PU 4", late=timedelta(hours=2))
        phone = _subscribe(committed, flaky, world.agent, "anna", settings)
        _refresh_overdue(committed, world.now)

        first = deliver_notifications(committed, settings, now=world.now)
        assert first == DeliverySummary(enqueued=1, retried=1)
        [row] = _outbox(committed)
        assert row.status == "pending" and "answered 500" in row.last_error
        assert row.next_attempt_at == world.now + timedelta(seconds=30)
        assert _subscriptions(committed) == ["device-anna"]

        # Not due yet, then due: the second attempt goes through, and only once.
        assert deliver_notifications(committed, settings, now=world.now) == DeliverySummary()
        later = deliver_notifications(committed, settings, now=world.at(0.01))
        assert later == DeliverySummary(sent=1)
        assert [r.status for r in flaky.requests] == [500, 201]
        assert phone.decrypt(flaky.requests[1].body)["title"].startswith("Overdue level 2")
    finally:
        flaky.stop()


def test_who_hears_an_alert_follows_preferences_locations_and_accounts(
    committed, service, settings
):
    with committed.begin() as c:
        world = build_world(c)
        v = add_vehicle(c, world, "B PU 5")  # at BER1
        munich = fleet.create_user(
            c, username="mo", full_name="Mo Munich", role="agent", home_location_id=world.muc.id
        )
        regional = fleet.create_user(c, username="rita", full_name="Rita Region", role="manager")
        leaver = fleet.create_user(
            c, username="lee", full_name="Lee Left", role="agent", home_location_id=world.ber.id
        )
        # Maria lives in Berlin but chose Munich only; Ben turned rollbacks off.
        preferences.save(
            c, user_id=world.manager.id, prefs=NotificationPrefs(location_ids=[world.muc.id])
        )
        preferences.save(c, user_id=world.agent2.id, prefs=NotificationPrefs(push_rollbacks=False))
    devices = {
        u.username: _subscribe(committed, service, u, u.username, settings)
        for u in (world.agent, world.agent2, world.manager, munich, regional, leaver)
    }
    with committed.begin() as c:
        c.execute(text("UPDATE users SET active = false WHERE id = :id"), {"id": leaver.id})
        wrong = status.change_status(
            c, vehicle_id=v.id, new_status="maintenance", changed_by=world.agent.id, reason="x"
        )
    with committed.begin() as c:
        audit.rollback_change(
            c, log_id=wrong.log_id, rolled_back_by=world.manager.id, reason="wrong car"
        )

    summary = deliver_notifications(committed, settings, now=world.now)

    # Anna (home BER1) and Rita (no home lot: every lot) hear of the rollback in Berlin.
    assert summary == DeliverySummary(enqueued=2, sent=2)
    assert sorted(r.path for r in service.requests) == ["/push/anna", "/push/rita"]
    for request in service.requests:
        name = request.path.rsplit("/", 1)[1]
        message = devices[name].decrypt(request.body)
        assert message["title"] == (
            "Status rolled back: B PU 5 maintenance → available at BER1 by Maria Manager"
        )
        assert message["body"] == f"Reason: rollback of #{wrong.log_id}: wrong car"
        assert message["url"] == f"/counter/#/vehicle/{v.id}"


def test_turning_pushes_off_on_a_device_drops_what_waited_for_it(committed, service, settings):
    world, _ = _late_rental(committed, "B PU 6", late=timedelta(hours=2))
    _subscribe(committed, service, world.agent, "anna", settings)
    _refresh_overdue(committed, world.now)
    with committed.begin() as c:
        from db import notifications

        notifications.enqueue_alerts(c, email_to=[], webhook_urls=[])
        push.unsubscribe(c, user_id=world.agent.id, device_id="device-anna")

    summary = deliver_notifications(committed, settings, now=world.now)

    assert summary == DeliverySummary()
    assert service.requests == []
    [row] = _outbox(committed)
    assert (row.status, row.last_error) == ("failed", "the user turned pushes off on this device")


def test_a_message_for_a_subscription_removed_meanwhile_is_failed_without_sending(
    committed, service, settings
):
    world, _ = _late_rental(committed, "B PU 7", late=timedelta(hours=2))
    _subscribe(committed, service, world.agent, "anna", settings)
    _refresh_overdue(committed, world.now)
    with committed.begin() as c:
        from db import notifications

        notifications.enqueue_alerts(c, email_to=[], webhook_urls=[])
        # Removed behind the outbox's back (the user was deleted, say).
        c.execute(text("DELETE FROM push_subscriptions"))

    summary = deliver_notifications(committed, settings, now=world.now)

    assert summary == DeliverySummary(failed=1)
    assert service.requests == []
    [row] = _outbox(committed)
    assert row.status == "failed" and "subscription was removed" in row.last_error


def test_the_vapid_key_is_made_once_and_kept(tmp_path):
    settings = Settings(data_dir=tmp_path)
    first = vapid.application_server_key(settings)
    assert vapid.application_server_key(Settings(data_dir=tmp_path)) == first
    assert len(first) == 87  # 65 bytes, uncompressed P-256 point, base64url
    assert (tmp_path / vapid.KEY_FILE).stat().st_mode & 0o777 == 0o600
    other = Settings(data_dir=tmp_path, vapid_private_key=(tmp_path / vapid.KEY_FILE).read_text())
    assert vapid.application_server_key(other) == first


def test_a_malformed_vapid_key_is_a_clear_error(tmp_path):
    from db.errors import InvalidInput

    with pytest.raises(InvalidInput, match="FLEET_VAPID_PRIVATE_KEY is not a P-256 private key"):
        vapid.vapid(Settings(data_dir=tmp_path, vapid_private_key="not a key"))
