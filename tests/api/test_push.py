"""Web Push over HTTP: the key, each user's own devices, preferences; bad subscriptions refused."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric import ec

from tests.pipeline.sinks import PushDevice

FCM = "https://fcm.googleapis.com/fcm/send/"


def _body(device: PushDevice, **extra) -> dict:
    return {"endpoint": device.endpoint, "keys": device.keys, "expirationTime": None, **extra}


def test_the_server_key_is_a_p256_point_browsers_can_subscribe_with(api):
    with api.client("analyst") as c:
        r = c.get("/api/push/key")
    assert r.status_code == 200, r.text
    key = r.json()["application_server_key"]
    raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    assert len(raw) == 65 and raw[0] == 4
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    with api.client("agent") as c:
        assert c.get("/api/push/key").json()["application_server_key"] == key


def test_each_user_sees_and_removes_only_their_own_devices(api):
    phone = PushDevice(endpoint=FCM + "anna-phone-1")
    with api.client("agent") as c:
        put = c.put(
            "/api/push/subscriptions/tablet-0001", json=_body(phone, device_label="Lot tablet")
        )
        again = c.put("/api/push/subscriptions/tablet-0001", json=_body(phone))
        mine = c.get("/api/push/subscriptions").json()
    with api.client("manager") as c:
        theirs = c.get("/api/push/subscriptions").json()
        not_theirs = c.delete("/api/push/subscriptions/tablet-0001")
    assert put.status_code == 200, put.text
    assert put.json()["push_service"] == "https://fcm.googleapis.com"
    assert "keys" not in put.json() and "endpoint" not in put.json()
    assert again.status_code == 200
    assert [(d["device_id"], d["device_label"]) for d in mine] == [("tablet-0001", "")]
    assert theirs == []
    assert not_theirs.status_code == 404 and not_theirs.json()["field"] == "device_id"
    with api.client("agent") as c:
        gone = c.delete("/api/push/subscriptions/tablet-0001")
        twice = c.delete("/api/push/subscriptions/tablet-0001")
        left = c.get("/api/push/subscriptions").json()
    assert gone.status_code == 204
    assert twice.status_code == 404
    assert left == []


def test_a_shared_tablet_moves_to_whoever_signs_in_next(api):
    tablet = PushDevice(endpoint=FCM + "shared-tablet")
    with api.client("agent") as c:
        c.put("/api/push/subscriptions/shared-tablet", json=_body(tablet))
    with api.client("manager") as c:
        moved = c.put("/api/push/subscriptions/shared-tablet", json=_body(tablet))
        hers = c.get("/api/push/subscriptions").json()
    with api.client("agent") as c:
        his = c.get("/api/push/subscriptions").json()
    assert moved.status_code == 200, moved.text
    assert [d["device_id"] for d in hers] == ["shared-tablet"]
    assert his == []


def test_bad_subscriptions_name_the_field_and_never_500(api):
    good = PushDevice(endpoint=FCM + "x")
    cases = {
        "not a push service": (
            _body(PushDevice(endpoint="https://evil.example.com/steal")),
            "endpoint",
        ),
        "plain http at a push service": (
            _body(PushDevice(endpoint="http://fcm.googleapis.com/fcm/send/x")),
            "endpoint",
        ),
        "lookalike host": (
            _body(PushDevice(endpoint="https://fcm.googleapis.com.evil.example/x")),
            "endpoint",
        ),
        "key not on the curve": (
            _body(good) | {"keys": {"p256dh": "B" + "A" * 86, "auth": good.keys["auth"]}},
            "keys.p256dh",
        ),
        "key not base64": (
            _body(good) | {"keys": {"p256dh": "%%%%" * 22, "auth": good.keys["auth"]}},
            "keys.p256dh",
        ),
        "short auth": (
            _body(good) | {"keys": {"p256dh": good.keys["p256dh"], "auth": "AAAA"}},
            "keys.auth",
        ),
        "missing keys": ({"endpoint": good.endpoint}, "keys"),
        "unknown field": (_body(good, colour="red"), "colour"),
    }
    with api.client("agent") as c:
        for name, (body, field) in cases.items():
            r = c.put("/api/push/subscriptions/device-0001", json=body)
            assert r.status_code == 422, (name, r.text)
            assert r.json()["field"] == field, (name, r.json())
            assert r.json().get("hint") or r.json().get("detail"), name
        bad_id = c.put("/api/push/subscriptions/x", json=_body(good))
        listed = c.get("/api/push/subscriptions").json()
    assert bad_id.status_code == 422
    assert listed == []


def test_preferences_change_one_field_at_a_time(api):
    with api.client("agent") as c:
        before = c.get("/api/preferences").json()
        off = c.patch("/api/preferences", json={"push_rollbacks": False})
        where = c.patch("/api/preferences", json={"location_ids": [api.world.muc.id]})
        unknown = c.patch("/api/preferences", json={"location_ids": [999_999]})
        bad = c.patch("/api/preferences", json={"push_overdue": "sometimes"})
        after = c.get("/api/preferences").json()
    with api.client("manager") as c:
        other = c.get("/api/preferences").json()
    assert before["push_overdue"] is before["push_conflicts"] is before["push_rollbacks"] is True
    assert off.status_code == 200 and off.json()["push_rollbacks"] is False
    assert where.status_code == 200, where.text
    assert unknown.status_code == 422 and unknown.json()["field"] == "location_ids"
    assert bad.status_code == 422 and bad.json()["field"] == "push_overdue"
    assert after == before | {"push_rollbacks": False, "location_ids": [api.world.muc.id]}
    assert other == before


def test_push_endpoints_need_a_signed_in_user(api):
    with api.client(None) as c:
        responses = [
            c.get("/api/push/key"),
            c.get("/api/push/subscriptions"),
            c.put("/api/push/subscriptions/device-0001", json={}),
            c.delete("/api/push/subscriptions/device-0001"),
            c.get("/api/preferences"),
            c.patch("/api/preferences", json={}),
        ]
    assert [r.status_code for r in responses] == [401] * 6
