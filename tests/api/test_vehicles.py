"""Vehicle status over HTTP: versions, idempotent replays, problems for bad input."""

from __future__ import annotations

import uuid


def test_status_carries_its_version_as_etag(api):
    v = api.vehicles[0]
    with api.client("analyst") as c:
        r = c.get(f"/api/vehicles/{v.id}/status")
    assert r.status_code == 200
    assert r.json()["plate"] == v.plate and r.json()["status"] == "available"
    assert r.headers["etag"] == f'"{r.json()["version"]}"'


def test_stale_if_match_gets_409_with_the_current_state(api):
    v = api.vehicles[0]
    with api.client("agent") as c:
        etag = c.get(f"/api/vehicles/{v.id}/status").headers["etag"]
        ok = c.put(
            f"/api/vehicles/{v.id}/status",
            json={"status": "cleaning", "reason": "wash"},
            headers={"If-Match": etag},
        )
        stale = c.put(
            f"/api/vehicles/{v.id}/status",
            json={"status": "maintenance", "reason": "brakes"},
            headers={"If-Match": etag},
        )
    assert ok.status_code == 200 and ok.json()["status"]["status"] == "cleaning"
    assert stale.status_code == 409
    body = stale.json()
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert body["code"] == "stale_version" and body["current"]["status"] == "cleaning"
    assert body["current"]["version"] == ok.json()["status"]["version"]


def test_replayed_idempotency_key_returns_first_result_and_changes_nothing(api, engine):
    v = api.vehicles[1]
    key = str(uuid.uuid4())
    request = {"status": "cleaning", "reason": "returned dirty", "expected_version": 1}
    before = _log_rows(engine, v.id)
    with api.client("agent") as c:
        first = c.put(
            f"/api/vehicles/{v.id}/status", json=request, headers={"Idempotency-Key": key}
        )
        again = c.put(
            f"/api/vehicles/{v.id}/status", json=request, headers={"Idempotency-Key": key}
        )
        other = c.put(
            f"/api/vehicles/{v.id}/status",
            json={**request, "status": "maintenance"},
            headers={"Idempotency-Key": key},
        )
        now = c.get(f"/api/vehicles/{v.id}/status").json()
    assert first.status_code == 200 and again.status_code == 200
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert now["version"] == first.json()["status"]["version"]  # applied once
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"
    assert _log_rows(engine, v.id) == before + 1


def _log_rows(engine, vehicle_id: int) -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT count(*) FROM vehicle_status_log WHERE vehicle_id = %s", (vehicle_id,)
        ).scalar()


def test_bad_input_names_the_field_and_never_500s(api):
    v = api.vehicles[0]
    with api.client("agent") as c:
        cases = {
            "missing reason": c.put(f"/api/vehicles/{v.id}/status", json={"status": "cleaning"}),
            "unknown status": c.put(
                f"/api/vehicles/{v.id}/status", json={"status": "flying", "reason": "x"}
            ),
            "naive time": c.put(
                f"/api/vehicles/{v.id}/status",
                json={
                    "status": "maintenance",
                    "reason": "x",
                    "expected_available_at": "2026-12-01T10:00:00",
                },
            ),
            "bad if-match": c.put(
                f"/api/vehicles/{v.id}/status",
                json={"status": "cleaning", "reason": "x"},
                headers={"If-Match": "yesterday"},
            ),
            "not json": c.put(
                f"/api/vehicles/{v.id}/status",
                content=b"{nope",
                headers={"content-type": "application/json"},
            ),
            "unknown vehicle": c.get("/api/vehicles/999999/status"),
            "id not a number": c.get("/api/vehicles/abc/status"),
        }
    fields = {name: (r.status_code, r.json().get("field")) for name, r in cases.items()}
    assert fields["missing reason"] == (422, "reason")
    assert fields["unknown status"][1] == "status" and fields["unknown status"][0] == 422
    assert fields["naive time"] == (422, "expected_available_at")
    assert fields["bad if-match"] == (400, "If-Match")
    assert fields["not json"][0] == 422
    assert fields["unknown vehicle"][0] == 404
    assert fields["id not a number"] == (422, "vehicle_id")
    for r in cases.values():
        assert "Traceback" not in r.text and r.json()["status"] == r.status_code


def test_analyst_cannot_change_status(api):
    v = api.vehicles[0]
    with api.client("analyst") as c:
        r = c.put(f"/api/vehicles/{v.id}/status", json={"status": "cleaning", "reason": "x"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


def test_plate_lookup_finds_misread_plate(api):
    with api.client("agent") as c:
        r = c.get("/api/vehicles/lookup/plate", params={"q": "AP1O2"})
    assert r.status_code == 200
    assert r.json()[0]["plate"] == "B AP 102"


def test_values_postgres_cannot_store_are_422_not_500(api):
    with api.client("agent") as c:
        lookup = c.get("/api/vehicles/lookup/customer", params={"q": "ab\x00cd"})
    with api.client(None) as c:
        token = c.post("/api/auth/token", json={"username": "a\x00b", "password": "x" * 12})
    assert lookup.status_code == 422 and "NUL" in lookup.json()["detail"]
    assert token.status_code in (401, 422)
