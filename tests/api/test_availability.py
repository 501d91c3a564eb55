"""Search and locks over HTTP: the prep buffer, alternatives, racing clerks, problems."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import httpx

from db import auth, rentals
from tests.conftest import add_vehicle


def _iso(t: datetime) -> str:
    return t.isoformat()


def _search(c: httpx.Client, start: datetime, end: datetime, location_id: int, **extra):
    return c.post(
        "/api/availability/search",
        json={"start": _iso(start), "end": _iso(end), "location_id": location_id, **extra},
    )


def _reserve(engine, api, vehicle, start: datetime, end: datetime):
    w = api.world
    with engine.begin() as c:
        return rentals.reserve(
            c,
            vehicle_id=vehicle.id,
            start=start,
            end=end,
            pickup_location_id=w.ber.id,
            customer_id=w.alice.id,
            booked_by=w.agent.id,
        )


def test_search_keeps_the_prep_buffer_free_after_a_booking(api, engine):
    w, car = api.world, api.vehicles[0]
    _reserve(engine, api, car, w.at(2), w.at(4))  # economy: 30 minutes to prepare
    with api.client("analyst") as c:
        during_prep = _search(c, w.at(4.25), w.at(8), w.ber.id)
        after_prep = _search(c, w.at(4.5), w.at(8), w.ber.id)
    assert during_prep.status_code == 200, during_prep.text
    plates = [h["plate"] for h in during_prep.json()["results"]]
    assert car.plate not in plates and len(plates) == 3
    assert car.plate in [h["plate"] for h in after_prep.json()["results"]]
    assert during_prep.json()["alternatives"] is None  # something fits: none worked out


def test_nothing_free_offers_upgrades_other_lots_and_nearest_windows(api, engine):
    w = api.world
    for car in api.vehicles:
        _reserve(engine, api, car, w.at(20), w.at(30))
    with engine.begin() as c:
        premium = add_vehicle(c, w, "B AP 900", category=w.prem)
        munich = add_vehicle(c, w, "M AP 901", location=w.muc)
    with api.client("agent") as c:
        r = _search(c, w.at(24), w.at(26), w.ber.id, category_id=w.econ.id)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["results"] == []
    offer = body["alternatives"]
    assert [u["plate"] for u in offer["upgrades"]] == [premium.plate]
    assert [(o["location_code"], o["vehicle"]["plate"]) for o in offer["other_locations"]] == [
        ("MUC1", munich.plate)
    ]
    first = offer["nearest_windows"][0]
    # Free again once the bookings end and the car is prepared: 30 h + 30 min.
    assert datetime.fromisoformat(first["start"]) >= w.at(30.5)
    assert datetime.fromisoformat(first["end"]) - datetime.fromisoformat(first["start"]) == (
        timedelta(hours=2)
    )


def test_lock_claims_the_car_until_released(api):
    w, car = api.world, api.vehicles[1]
    lock = {
        "vehicle_id": car.id,
        "start": _iso(w.at(3)),
        "end": _iso(w.at(5)),
        "location_id": w.ber.id,
        "ttl_seconds": 300,
    }
    with api.client("agent") as c:
        placed = c.post("/api/availability/lock", json=lock)
        mine = c.get("/api/availability/locks").json()
        hidden = _search(c, w.at(3), w.at(5), w.ber.id).json()["results"]
        released = c.delete(f"/api/availability/lock/{placed.json()['id']}")
        again = c.delete(f"/api/availability/lock/{placed.json()['id']}")
        after = c.get("/api/availability/locks").json()
        shown = _search(c, w.at(3), w.at(5), w.ber.id).json()["results"]
    assert placed.status_code == 201, placed.text
    hold = placed.json()
    assert (hold["kind"], hold["state"], hold["created_by"]) == ("hold", "active", w.agent.id)
    expires = datetime.fromisoformat(hold["expires_at"])
    created = datetime.fromisoformat(hold["created_at"])
    assert timedelta(seconds=295) < expires - created <= timedelta(seconds=301)
    assert [h["id"] for h in mine] == [hold["id"]]
    assert car.plate not in [h["plate"] for h in hidden]
    assert released.status_code == 204
    assert again.status_code == 409 and again.json()["code"] == "hold_expired"
    assert after == []
    assert car.plate in [h["plate"] for h in shown]


def test_two_agents_locking_the_same_car_at_once_one_wins_the_other_is_told_who(api, engine):
    w = api.world
    with engine.begin() as c:
        ben = auth.issue_token(c, user_id=w.agent2.id, kind="api", lifetime=timedelta(hours=1))
    clients = [
        api.client("agent"),
        api.client(None, headers={"Authorization": f"Bearer {ben.token}"}),
    ]
    for car in api.vehicles[:3]:
        gate = threading.Barrier(2)
        answers: list[httpx.Response] = [None, None]  # type: ignore[list-item]

        def lock(i: int, start: float, end: float, car=car, gate=gate, answers=answers) -> None:
            body = {
                "vehicle_id": car.id,
                "start": _iso(w.at(start)),
                "end": _iso(w.at(end)),
                "location_id": w.ber.id,
            }
            gate.wait()
            answers[i] = clients[i].post("/api/availability/lock", json=body)

        # Overlapping, not identical, periods: the second starts inside the first.
        threads = [
            threading.Thread(target=lock, args=(0, 10, 14)),
            threading.Thread(target=lock, args=(1, 12, 16)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(a.status_code for a in answers)
        assert codes == [201, 409], [a.text for a in answers]
        won = next(a for a in answers if a.status_code == 201).json()
        lost = next(a for a in answers if a.status_code == 409).json()
        assert lost["code"] == "booking_conflict"
        assert [b["id"] for b in lost["blocking"]] == [won["id"]]
        assert f"hold #{won['id']}" in lost["detail"]
    for c in clients:
        c.close()


def _lock(c: httpx.Client, api, car, start: float, end: float) -> dict:
    w = api.world
    body = {
        "vehicle_id": car.id,
        "start": _iso(w.at(start)),
        "end": _iso(w.at(end)),
        "location_id": w.ber.id,
    }
    r = c.post("/api/availability/lock", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def _ben(api, engine) -> httpx.Client:
    with engine.begin() as c:
        ben = auth.issue_token(
            c, user_id=api.world.agent2.id, kind="api", lifetime=timedelta(hours=1)
        )
    return api.client(None, headers={"Authorization": f"Bearer {ben.token}"})


def test_another_agent_can_neither_extend_nor_release_your_lock_and_is_told_whose(api, engine):
    w, car = api.world, api.vehicles[2]
    with api.client("agent") as anna:
        hold = _lock(anna, api, car, 3, 5)
    with _ben(api, engine) as ben:
        extend = ben.post(f"/api/availability/lock/{hold['id']}/extend", json={"ttl_seconds": 900})
        release = ben.delete(f"/api/availability/lock/{hold['id']}", params={"reason": "I need it"})
    for r in (extend, release):
        assert r.status_code == 409, r.text
        body = r.json()
        assert (body["code"], body["field"]) == ("hold_taken", "hold_id")
        assert body["holder"] == {"id": w.agent.id, "username": "anna", "full_name": "Anna Agent"}
        assert datetime.fromisoformat(body["expires_at"]) == datetime.fromisoformat(
            hold["expires_at"]
        )
        assert "is Anna Agent's until" in body["detail"]
    assert "ask Anna Agent, or a manager" in release.json()["hint"]
    with api.client("agent") as anna:
        mine = anna.get("/api/availability/locks").json()
        longer = anna.post(f"/api/availability/lock/{hold['id']}/extend", json={"ttl_seconds": 900})
        too_long = anna.post(
            f"/api/availability/lock/{hold['id']}/extend", json={"ttl_seconds": 99_999}
        )
    assert [(h["id"], h["expires_at"]) for h in mine] == [(hold["id"], hold["expires_at"])]
    assert longer.status_code == 200, longer.text
    gained = datetime.fromisoformat(longer.json()["expires_at"]) - datetime.fromisoformat(
        hold["expires_at"]
    )
    assert gained > timedelta(seconds=250)  # 600 s at first, now 900 s from a moment later
    assert (too_long.status_code, too_long.json()["field"]) == (422, "ttl_seconds")


def test_manager_releases_an_agents_lock_with_a_reason_the_audit_trail_keeps(api):
    w, car = api.world, api.vehicles[3]
    with api.client("agent") as anna:
        hold = _lock(anna, api, car, 3, 5)
    path = f"/api/availability/lock/{hold['id']}"
    with api.client("manager") as maria:
        no_reason = maria.delete(path)
        blank = maria.delete(path, params={"reason": "  "})
        released = maria.delete(path, params={"reason": "customer walked out"})
        trail = maria.get("/api/availability/audit", params={"user_id": w.manager.id}).json()
        shown = _search(maria, w.at(3), w.at(5), w.ber.id).json()["results"]
    assert (no_reason.status_code, no_reason.json()["field"]) == (422, "reason"), no_reason.text
    assert "a reason is needed to release Anna Agent's hold" in no_reason.json()["detail"]
    assert (blank.status_code, blank.json()["field"]) == (422, "reason"), blank.text
    assert released.status_code == 204, released.text
    assert car.plate in [h["plate"] for h in shown]
    [event] = [e for e in trail["availability_changes"] if e["kind"] == "hold_released"]
    assert (event["vehicle_id"], event["actor_name"]) == (car.id, "Maria Manager")
    assert event["payload"]["reason"] == "customer walked out"
    assert event["payload"]["holder"]["username"] == "anna"
    with api.client("agent") as anna:
        assert anna.get("/api/availability/locks").json() == []


def test_analyst_may_search_but_not_lock(api):
    w, car = api.world, api.vehicles[0]
    with api.client("analyst") as c:
        found = _search(c, w.at(2), w.at(4), w.ber.id)
        lock = c.post(
            "/api/availability/lock",
            json={
                "vehicle_id": car.id,
                "start": _iso(w.at(2)),
                "end": _iso(w.at(4)),
                "location_id": w.ber.id,
            },
        )
    assert found.status_code == 200 and len(found.json()["results"]) == 4
    assert lock.status_code == 403 and lock.json()["code"] == "forbidden"


def test_bad_search_and_lock_input_names_the_field_and_never_500s(api):
    w, car = api.world, api.vehicles[0]
    good = {
        "vehicle_id": car.id,
        "start": _iso(w.at(2)),
        "end": _iso(w.at(4)),
        "location_id": w.ber.id,
    }
    with api.client("agent") as c:

        def lock(**change):
            return c.post("/api/availability/lock", json={**good, **change})

        cases = {
            "naive start": (lock(start="2026-12-01T10:00:00"), 422, "start"),
            "end before start": (lock(end=_iso(w.at(1))), 422, "end"),
            "short ttl": (lock(ttl_seconds=5), 422, "ttl_seconds"),
            "unknown field": (lock(colour="red"), 422, "colour"),
            "id too big": (lock(vehicle_id=2**70), 422, "vehicle_id"),
            "year 1": (lock(start="0001-01-01T00:00:00+14:00"), 422, "start"),
            "unknown vehicle": (lock(vehicle_id=999_999), 404, "vehicle_id"),
            "unknown lot": (lock(location_id=999_999), 404, "location_id"),
            "unknown return lot": (lock(return_location_id=999_999), 404, "return_location_id"),
            "alternatives without category": (
                _search(c, w.at(2), w.at(4), w.ber.id, with_alternatives=True),
                422,
                "category_id",
            ),
            "nul in feature": (
                _search(c, w.at(2), w.at(4), w.ber.id, features=["tow\x00bar"]),
                422,
                "features.0",
            ),
            "unknown category": (
                _search(c, w.at(2), w.at(4), w.ber.id, category_id=999_999),
                404,
                "category_id",
            ),
            "release not a number": (c.delete("/api/availability/lock/abc"), 422, "hold_id"),
            "release unknown": (c.delete("/api/availability/lock/999999"), 404, "hold_id"),
        }
    for name, (r, status, field) in cases.items():
        assert (r.status_code, r.json().get("field")) == (status, field), (name, r.text)
        assert r.json()["status"] == status and "Traceback" not in r.text


def test_reference_data_lists_locations_and_categories(api):
    with api.client("analyst") as c:
        locations = c.get("/api/locations").json()
        categories = c.get("/api/categories").json()
    assert [loc["code"] for loc in locations] == ["BER1", "JFK1", "MUC1"]
    assert [(cat["code"], cat["prep_buffer"]) for cat in categories] == [
        ("ECON", "PT30M"),
        ("SUV", "PT1H"),
        ("PREM", "PT1H30M"),
    ]
