"""Reservations and rentals over HTTP: from a hold or direct, cancel, pick up, extend, return."""

from __future__ import annotations

from datetime import datetime, timedelta

from db import auth


def _iso(t: datetime) -> str:
    return t.isoformat()


def _lock(c, api, car, start: float, end: float) -> dict:
    w = api.world
    r = c.post(
        "/api/availability/lock",
        json={
            "vehicle_id": car.id,
            "start": _iso(w.at(start)),
            "end": _iso(w.at(end)),
            "location_id": w.ber.id,
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


def _direct(api, car, start: float, end: float, **extra) -> dict:
    w = api.world
    return {
        "customer_id": w.bob.id,
        "vehicle_id": car.id,
        "start": _iso(w.at(start)),
        "end": _iso(w.at(end)),
        "location_id": w.ber.id,
        **extra,
    }


def test_hold_becomes_a_rental_that_is_extended_and_returned_at_another_lot(api):
    w, car = api.world, api.vehicles[0]
    with api.client("agent") as c:
        hold = _lock(c, api, car, 2, 6)
        booked = c.post(
            "/api/reservations",
            json={"hold_id": hold["id"], "customer_id": w.alice.id, "reference": "R-1"},
        )
        locks_after = c.get("/api/availability/locks").json()
        picked = c.post(f"/api/rentals/{hold['id']}/pickup", json={"at": _iso(w.at(2))})
        out = c.get(f"/api/vehicles/{car.id}/status").json()
        extended = c.post(f"/api/rentals/{hold['id']}/extend", json={"new_end": _iso(w.at(8))})
        returned = c.post(
            f"/api/rentals/{hold['id']}/return",
            json={"at": _iso(w.at(7)), "location_id": w.muc.id, "odometer_km": 12_345},
        )
        back = c.get(f"/api/vehicles/{car.id}/status").json()
    assert booked.status_code == 201, booked.text
    res = booked.json()
    assert (res["id"], res["kind"], res["customer_name"], res["reference"]) == (
        hold["id"],
        "reservation",
        "Alice Schmidt",
        "R-1",
    )
    assert res["expires_at"] is None and locks_after == []
    assert picked.status_code == 200 and picked.json()["kind"] == "rental"
    assert (out["status"], out["customer_name"]) == ("rented", "Alice Schmidt")
    assert extended.status_code == 200
    assert datetime.fromisoformat(extended.json()["end"]) == w.at(8)
    assert returned.status_code == 200, returned.text
    done = returned.json()
    assert done["state"] == "completed"
    assert datetime.fromisoformat(done["finished_at"]) == w.at(7)
    assert (back["status"], back["location_code"]) == ("cleaning", "MUC1")
    assert back["updated_by"] == w.agent.id


def test_direct_reservation_is_cancelled_and_the_period_is_free_again(api):
    w, car = api.world, api.vehicles[1]
    search = {
        "start": _iso(w.at(3)),
        "end": _iso(w.at(5)),
        "location_id": w.ber.id,
    }
    with api.client("manager") as c:
        booked = c.post("/api/reservations", json=_direct(api, car, 3, 5))
        taken = c.post("/api/availability/search", json=search).json()["results"]
        cancelled = c.post(
            f"/api/reservations/{booked.json()['id']}/cancel", json={"reason": "customer called"}
        )
        again = c.post(f"/api/reservations/{booked.json()['id']}/cancel")
        free = c.post("/api/availability/search", json=search).json()["results"]
    assert booked.status_code == 201, booked.text
    assert (booked.json()["customer_name"], booked.json()["created_by"]) == (
        "Bob Meyer",
        w.manager.id,
    )
    assert car.plate not in [h["plate"] for h in taken]
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert again.status_code == 422 and again.json()["field"] == "reservation_id"
    assert car.plate in [h["plate"] for h in free]


def test_booking_over_someone_elses_hold_gets_409_naming_it(api):
    car = api.vehicles[2]
    with api.client("agent") as c:
        hold = _lock(c, api, car, 10, 12)
    with api.client("manager") as c:
        r = c.post("/api/reservations", json=_direct(api, car, 11, 13))
    assert r.status_code == 409
    assert [b["id"] for b in r.json()["blocking"]] == [hold["id"]]
    assert f"hold #{hold['id']}" in r.json()["detail"]


def test_extension_into_the_next_booking_is_refused_naming_it(api):
    w, car = api.world, api.vehicles[3]
    with api.client("agent") as c:
        first = c.post("/api/reservations", json=_direct(api, car, 2, 4)).json()
        nxt = c.post(
            "/api/reservations", json=_direct(api, car, 8, 10, customer_id=w.alice.id)
        ).json()
        c.post(f"/api/rentals/{first['id']}/pickup", json={"at": _iso(w.at(2))})
        r = c.post(f"/api/rentals/{first['id']}/extend", json={"new_end": _iso(w.at(9))})
    assert r.status_code == 409 and r.json()["code"] == "booking_conflict"
    assert [b["id"] for b in r.json()["blocking"]] == [nxt["id"]]


def test_analyst_cannot_book_or_hand_over(api):
    car = api.vehicles[0]
    with api.client("agent") as c:
        booked = c.post("/api/reservations", json=_direct(api, car, 2, 4)).json()
    with api.client("analyst") as c:
        book = c.post("/api/reservations", json=_direct(api, car, 6, 8))
        pickup = c.post(f"/api/rentals/{booked['id']}/pickup")
    assert book.status_code == 403 and pickup.status_code == 403


def test_bad_booking_input_names_the_field_and_never_500s(api):
    w, car = api.world, api.vehicles[0]
    with api.client("agent") as c:
        hold = _lock(c, api, car, 20, 22)
        c.delete(f"/api/availability/lock/{hold['id']}")
        rental = c.post("/api/reservations", json=_direct(api, car, 2, 4)).json()
        c.post(f"/api/rentals/{rental['id']}/pickup", json={"at": _iso(w.at(2))})
        direct = _direct(api, car, 6, 8)
        cases = {
            "hold and vehicle": (
                c.post(
                    "/api/reservations",
                    json={"hold_id": hold["id"], "customer_id": w.bob.id, "vehicle_id": car.id},
                ),
                422,
                "vehicle_id",
            ),
            "no start": (
                c.post("/api/reservations", json={k: v for k, v in direct.items() if k != "start"}),
                422,
                "start",
            ),
            "no customer": (
                c.post("/api/reservations", json={"hold_id": hold["id"]}),
                422,
                "customer_id",
            ),
            "naive end": (
                c.post("/api/reservations", json={**direct, "end": "2026-12-01T10:00"}),
                422,
                "end",
            ),
            "unknown customer": (
                c.post("/api/reservations", json={**direct, "customer_id": 999_999}),
                404,
                "customer_id",
            ),
            "released hold": (
                c.post("/api/reservations", json={"hold_id": hold["id"], "customer_id": w.bob.id}),
                409,
                "hold_id",
            ),
            "cancel a rental": (
                c.post(f"/api/reservations/{rental['id']}/cancel"),
                422,
                "reservation_id",
            ),
            "pick up unknown": (c.post("/api/rentals/999999/pickup"), 404, "rental_id"),
            "extend before start": (
                c.post(f"/api/rentals/{rental['id']}/extend", json={"new_end": _iso(w.at(1))}),
                422,
                "new_end",
            ),
            "negative odometer": (
                c.post(f"/api/rentals/{rental['id']}/return", json={"odometer_km": -1}),
                422,
                "odometer_km",
            ),
            "return to unknown lot": (
                c.post(f"/api/rentals/{rental['id']}/return", json={"location_id": 999_999}),
                404,
                "location_id",
            ),
        }
    for name, (r, status, field) in cases.items():
        assert (r.status_code, r.json().get("field")) == (status, field), (name, r.text)
        assert "Traceback" not in r.text


def _ben(api, engine):
    """A client for Ben, a second agent at the same lot."""
    with engine.begin() as c:
        token = auth.issue_token(
            c, user_id=api.world.agent2.id, kind="api", lifetime=timedelta(hours=1)
        )
    return api.client(None, headers={"Authorization": f"Bearer {token.token}"})


def test_booking_someone_elses_hold_gets_409_naming_the_holder_and_expiry(api, engine):
    w, car = api.world, api.vehicles[1]
    with api.client("agent") as anna:
        hold = _lock(anna, api, car, 30, 34)
    book = {"hold_id": hold["id"], "customer_id": w.bob.id}
    with _ben(api, engine) as ben, api.client("manager") as maria:
        by_ben = ben.post("/api/reservations", json=book)
        by_manager = maria.post("/api/reservations", json=book)
    for r in (by_ben, by_manager):
        assert r.status_code == 409, r.text
        body = r.json()
        assert (body["code"], body["field"]) == ("hold_taken", "hold_id")
        assert body["holder"] == {"id": w.agent.id, "username": "anna", "full_name": "Anna Agent"}
        assert datetime.fromisoformat(body["expires_at"]) == datetime.fromisoformat(
            hold["expires_at"]
        )
        assert f"hold #{hold['id']} on {car.plate} is Anna Agent's until" in body["detail"]
    with api.client("agent") as anna:
        mine = anna.post("/api/reservations", json=book)
    assert mine.status_code == 201, mine.text
    assert (mine.json()["kind"], mine.json()["customer_id"]) == ("reservation", w.bob.id)


def test_second_book_of_a_converted_hold_answers_409_with_the_reservation(api):
    w, car = api.world, api.vehicles[2]
    with api.client("agent") as c:
        hold = _lock(c, api, car, 36, 40)
        book = {"hold_id": hold["id"], "customer_id": w.alice.id, "reference": "R-2"}
        first = c.post("/api/reservations", json=book)
        again = c.post("/api/reservations", json=book)
    assert first.status_code == 201, first.text
    assert again.status_code == 409, again.text
    body = again.json()
    assert (body["code"], body["field"]) == ("hold_converted", "hold_id")
    assert body["reservation"] == first.json()
    assert body["detail"].startswith(
        f"hold #{hold['id']} is already booked: reservation #{hold['id']} R-2 for Alice Schmidt"
    )
