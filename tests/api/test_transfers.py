"""Transfers over HTTP: schedule with an estimated ETA, dispatch, arrive at the new lot."""

from __future__ import annotations

from datetime import datetime, timedelta


def test_transfer_is_scheduled_dispatched_and_arrives_at_the_new_lot(api):
    w, car = api.world, api.vehicles[0]
    # Leaving about now (the world's clock runs up to an hour ahead of the real one).
    depart = w.at(-1)
    with api.client("agent") as c:
        booked = c.post(
            "/api/transfers",
            json={
                "vehicle_id": car.id,
                "to_location_id": w.muc.id,
                "depart_at": depart.isoformat(),
                "reference": "T-1",
            },
        )
        listed = c.get("/api/transfers").json()
        tid = booked.json()["id"]
        sent = c.post(f"/api/transfers/{tid}/dispatch")
        moving = c.get(f"/api/vehicles/{car.id}/status").json()
        came = c.post(f"/api/transfers/{tid}/arrive")
        there = c.get(f"/api/vehicles/{car.id}/status").json()
        open_after = c.get("/api/transfers").json()
        done = c.get("/api/transfers", params={"done_since": depart.isoformat()}).json()
    assert booked.status_code == 201, booked.text
    block = booked.json()
    assert (block["kind"], block["created_by"]) == ("transfer", w.agent.id)
    eta = datetime.fromisoformat(block["end"])
    # About 500 km by road at 70 km/h plus handling: well over eight hours.
    assert timedelta(hours=8) < eta - depart < timedelta(hours=12)
    [row] = listed
    assert (row["block_id"], row["from_code"], row["to_code"]) == (tid, "BER1", "MUC1")
    assert row["departed_at"] is None and row["late_by"] is None
    assert sent.status_code == 200 and sent.json()["started_at"] is not None
    assert (moving["status"], moving["destination_code"]) == ("in_transit", "MUC1")
    assert came.status_code == 200, came.text
    assert came.json()["state"] == "completed"
    assert (there["status"], there["location_code"]) == ("available", "MUC1")
    assert open_after == []
    assert [(t["block_id"], t["state"]) for t in done] == [(tid, "completed")]


def test_analyst_cannot_move_vehicles(api):
    w = api.world
    with api.client("analyst") as c:
        listed = c.get("/api/transfers")
        r = c.post(
            "/api/transfers",
            json={
                "vehicle_id": api.vehicles[0].id,
                "to_location_id": w.muc.id,
                "depart_at": w.at(2).isoformat(),
            },
        )
    assert listed.status_code == 200
    assert r.status_code == 403


def test_bad_transfer_input_names_the_field_and_never_500s(api):
    w, car = api.world, api.vehicles[0]
    good = {"vehicle_id": car.id, "to_location_id": w.muc.id, "depart_at": w.at(2).isoformat()}
    with api.client("agent") as c:
        arrived_early = c.post("/api/transfers", json={**good, "eta": w.at(1).isoformat()})
        cases = {
            "naive departure": (
                c.post("/api/transfers", json={**good, "depart_at": "2026-12-01T08:00"}),
                422,
                "depart_at",
            ),
            "to where it is": (
                c.post("/api/transfers", json={**good, "to_location_id": w.ber.id}),
                422,
                "to_location_id",
            ),
            "unknown destination": (
                c.post("/api/transfers", json={**good, "to_location_id": 999_999}),
                404,
                "to_location_id",
            ),
            "eta before departure": (arrived_early, 422, "eta"),
            "dispatch unknown": (c.post("/api/transfers/999999/dispatch"), 404, "transfer_id"),
            "dispatch not a number": (c.post("/api/transfers/x/dispatch"), 422, "transfer_id"),
            "bad done_since": (
                c.get("/api/transfers", params={"done_since": "yesterday"}),
                422,
                "done_since",
            ),
        }
    for name, (r, code, field) in cases.items():
        assert (r.status_code, r.json().get("field")) == (code, field), (name, r.text)


def test_dispatching_a_booking_that_is_not_a_transfer_is_refused(api):
    w, car = api.world, api.vehicles[1]
    with api.client("agent") as c:
        res = c.post(
            "/api/reservations",
            json={
                "customer_id": w.alice.id,
                "vehicle_id": car.id,
                "start": w.at(2).isoformat(),
                "end": w.at(4).isoformat(),
                "location_id": w.ber.id,
            },
        ).json()
        r = c.post(f"/api/transfers/{res['id']}/dispatch")
    assert r.status_code == 422 and r.json()["field"] == "transfer_id"
    assert "not a transfer" in r.json()["detail"]
