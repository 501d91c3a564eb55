"""Conflicts over HTTP: a booking its car cannot honour, suggestions, and applying a swap."""

from __future__ import annotations

from datetime import datetime

from db import rentals, status


def _booking_on_broken_car(api, engine, car, start: float = 3, end: float = 5):
    """Reserve the car for Alice, then take it out of service: the booking is at risk."""
    w = api.world
    with engine.begin() as c:
        booking = rentals.reserve(
            c,
            vehicle_id=car.id,
            start=w.at(start),
            end=w.at(end),
            pickup_location_id=w.ber.id,
            customer_id=w.alice.id,
            booked_by=w.agent.id,
            reference="R-77",
        )
        status.change_status(
            c,
            vehicle_id=car.id,
            new_status="out_of_service",
            changed_by=w.manager.id,
            reason="gearbox failed",
        )
    return booking


def test_conflict_is_listed_with_swaps_and_a_swap_resolves_it(api, engine):
    w, broken = api.world, api.vehicles[0]
    booking = _booking_on_broken_car(api, engine, broken)
    with api.client("analyst") as c:
        listed = c.get("/api/availability/conflicts")
    assert listed.status_code == 200, listed.text
    [conflict] = listed.json()
    assert (conflict["kind"], conflict["block_id"], conflict["plate"]) == (
        "out_of_service",
        booking.id,
        broken.plate,
    )
    assert conflict["customer_phone"] == "+49 30 1234567"
    swaps = [s for s in conflict["suggestions"] if s["action"] == "swap"]
    spare = {v.id for v in api.vehicles[1:]}
    assert swaps and {s["vehicle_id"] for s in swaps} <= spare

    with api.client("agent") as c:
        moved = c.post(
            "/api/availability/conflicts/swap",
            json={"block_id": booking.id, "vehicle_id": swaps[0]["vehicle_id"]},
        )
        after = c.get("/api/availability/conflicts").json()
    assert moved.status_code == 200, moved.text
    new = moved.json()
    assert (new["vehicle_id"], new["customer_name"], new["reference"]) == (
        swaps[0]["vehicle_id"],
        "Alice Schmidt",
        "R-77",
    )
    period = (datetime.fromisoformat(new["start"]), datetime.fromisoformat(new["end"]))
    assert period == (booking.start, booking.end)
    assert new["created_by"] == w.agent.id
    assert after == []


def test_swap_onto_a_car_taken_meanwhile_is_refused_naming_the_taker(api, engine):
    w = api.world
    booking = _booking_on_broken_car(api, engine, api.vehicles[0])
    taken = api.vehicles[1]
    with api.client("manager") as c:
        other = c.post(
            "/api/reservations",
            json={
                "customer_id": w.bob.id,
                "vehicle_id": taken.id,
                "start": w.at(4).isoformat(),
                "end": w.at(6).isoformat(),
                "location_id": w.ber.id,
            },
        ).json()
        r = c.post(
            "/api/availability/conflicts/swap",
            json={"block_id": booking.id, "vehicle_id": taken.id},
        )
        still = c.get("/api/availability/conflicts").json()
    assert r.status_code == 409 and [b["id"] for b in r.json()["blocking"]] == [other["id"]]
    assert [x["block_id"] for x in still] == [booking.id]  # the old booking was kept


def test_analyst_cannot_swap(api, engine):
    booking = _booking_on_broken_car(api, engine, api.vehicles[0])
    with api.client("analyst") as c:
        r = c.post(
            "/api/availability/conflicts/swap",
            json={"block_id": booking.id, "vehicle_id": api.vehicles[1].id},
        )
    assert r.status_code == 403


def test_bad_conflict_input_names_the_field_and_never_500s(api, engine):
    booking = _booking_on_broken_car(api, engine, api.vehicles[0])
    with api.client("agent") as c:
        cases = {
            "zero horizon": (
                c.get("/api/availability/conflicts", params={"horizon_hours": 0}),
                422,
                "horizon_hours",
            ),
            "same car": (
                c.post(
                    "/api/availability/conflicts/swap",
                    json={"block_id": booking.id, "vehicle_id": api.vehicles[0].id},
                ),
                422,
                "vehicle_id",
            ),
            "unknown booking": (
                c.post(
                    "/api/availability/conflicts/swap",
                    json={"block_id": 999_999, "vehicle_id": api.vehicles[1].id},
                ),
                404,
                "block_id",
            ),
            "unknown car": (
                c.post(
                    "/api/availability/conflicts/swap",
                    json={"block_id": booking.id, "vehicle_id": 999_999},
                ),
                404,
                "vehicle_id",
            ),
            "missing car": (
                c.post("/api/availability/conflicts/swap", json={"block_id": booking.id}),
                422,
                "vehicle_id",
            ),
        }
    for name, (r, code, field) in cases.items():
        assert (r.status_code, r.json().get("field")) == (code, field), (name, r.text)


def test_a_contract_the_fleet_cannot_honour_is_listed_until_a_fitting_version_clears_it(
    api, engine
):
    from pipeline.ingest import ingest_file

    w, car = api.world, api.vehicles[0]
    header = (
        "external_id,version,updated_at,event,plate,customer_name,pickup_location,"
        "return_location,pickup_at,return_at\n"
    )

    def contract(eid: str, version: int, start: float, end: float) -> str:
        return (
            f"{eid},{version},2026-11-01T10:00Z,modified,{car.plate},Ada Byron,BER1,BER1,"
            f"{w.at(start).isoformat()},{w.at(end).isoformat()}\n"
        )

    ingest_file(
        engine,
        name="contracts-1.csv",
        data=(header + contract("A-1", 1, 30, 40) + contract("A-2", 1, 50, 60)).encode(),
    )
    ingest_file(engine, name="contracts-2.csv", data=(header + contract("A-1", 2, 30, 55)).encode())
    with api.client("analyst") as c:
        listed = c.get("/api/availability/conflicts/feeds")
        elsewhere = c.get("/api/availability/conflicts/feeds", params={"location_id": w.muc.id})
    assert listed.status_code == 200, listed.text
    [collision] = listed.json()
    assert (collision["external_id"], collision["plate"]) == ("A-1", car.plate)
    assert "already spoken for" in collision["reason"]
    assert any(s["action"] == "swap" for s in collision["suggestions"])
    assert elsewhere.json() == []
    ingest_file(engine, name="contracts-3.csv", data=(header + contract("A-1", 3, 30, 45)).encode())
    with api.client("agent") as c:
        assert c.get("/api/availability/conflicts/feeds").json() == []
        anonymous = c.get("/api/availability/conflicts/feeds", headers={"Authorization": ""})
    assert anonymous.status_code == 401
