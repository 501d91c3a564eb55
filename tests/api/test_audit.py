"""The audit trail over HTTP: history, filtered log, and rollback for managers only."""

from __future__ import annotations


def _change(c, vehicle_id: int, new_status: str, reason: str) -> int:
    r = c.put(f"/api/vehicles/{vehicle_id}/status", json={"status": new_status, "reason": reason})
    assert r.status_code == 200, r.text
    return r.json()["log_id"]


def test_agent_cannot_roll_back_but_a_manager_can_and_history_shows_both(api):
    w, car = api.world, api.vehicles[0]
    with api.client("agent") as c:
        wrong = _change(c, car.id, "cleaning", "tapped the wrong car")
        refused = c.post(f"/api/audit/{wrong}/rollback", json={"reason": "wrong car"})
    with api.client("manager") as c:
        undone = c.post(f"/api/audit/{wrong}/rollback", json={"reason": "wrong car"})
        again = c.post(f"/api/audit/{wrong}/rollback", json={"reason": "wrong car"})
        now = c.get(f"/api/vehicles/{car.id}/status").json()
    with api.client("analyst") as c:
        history = c.get(f"/api/availability/history/{car.id}")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert undone.status_code == 200, undone.text
    assert (undone.json()["old_status"], undone.json()["status"]["status"]) == (
        "cleaning",
        "available",
    )
    assert now["status"] == "available" and now["updated_by"] == w.manager.id
    assert again.status_code == 409 and again.json()["code"] == "rollback_refused"
    assert history.status_code == 200
    changes = history.json()["status_changes"]
    assert [(e["new_status"], e["changed_by"]) for e in changes] == [
        ("available", w.manager.id),
        ("cleaning", w.agent.id),
        ("available", w.manager.id),  # registered by the fleet manager
    ]
    assert changes[0]["reverts_log_id"] == wrong
    assert changes[1]["reverted_by_log_id"] == undone.json()["log_id"]
    assert "rollback of" in changes[0]["change_reason"]
    kinds = [e["kind"] for e in history.json()["availability_changes"]]
    assert kinds[-1] == "vehicle_registered" and len(kinds) == 3


def test_rolling_back_a_change_with_later_ones_is_refused_naming_them(api):
    car = api.vehicles[1]
    with api.client("agent") as c:
        first = _change(c, car.id, "cleaning", "returned dirty")
        later = _change(c, car.id, "available", "cleaned")
    with api.client("admin") as c:
        r = c.post(f"/api/audit/{first}/rollback", json={"reason": "mistake"})
        status = c.get(f"/api/vehicles/{car.id}/status").json()["status"]
    assert r.status_code == 409
    assert r.json()["later_changes"] == [later] and f"#{later}" in r.json()["detail"]
    assert status == "available"  # nothing was undone


def test_audit_log_filters_by_user_and_time(api):
    w = api.world
    with api.client("agent") as c:
        _change(c, api.vehicles[2].id, "cleaning", "by the agent")
    with api.client("manager") as c:
        _change(c, api.vehicles[3].id, "maintenance", "by the manager")
    with api.client("analyst") as c:
        by_agent = c.get("/api/availability/audit", params={"user_id": w.agent.id})
        at_lot = c.get("/api/availability/audit", params={"location_id": w.ber.id})
        future = c.get("/api/availability/audit", params={"since": w.at(24).isoformat()})
    assert by_agent.status_code == 200, by_agent.text
    assert [e["change_reason"] for e in by_agent.json()["status_changes"]] == ["by the agent"]
    assert [e["kind"] for e in by_agent.json()["availability_changes"]] == ["status_changed"]
    assert len(at_lot.json()["status_changes"]) == 6  # four registrations, two changes
    assert at_lot.json()["availability_changes"] is None  # that log has no lot filter
    assert future.json() == {"status_changes": [], "availability_changes": []}


def test_bad_audit_input_names_the_field_and_never_500s(api):
    with api.client("manager") as c:
        cases = {
            "naive since": (
                c.get("/api/availability/audit", params={"since": "2026-11-01T00:00:00"}),
                422,
                "since",
            ),
            "zero limit": (c.get("/api/availability/audit", params={"limit": 0}), 422, "limit"),
            "unknown vehicle": (c.get("/api/availability/history/999999"), 404, "vehicle_id"),
            "vehicle not a number": (c.get("/api/availability/history/B-1"), 422, "vehicle_id"),
            "no reason": (c.post("/api/audit/1/rollback", json={}), 422, "reason"),
            "unknown change": (
                c.post("/api/audit/999999/rollback", json={"reason": "x"}),
                404,
                "log_id",
            ),
        }
    for name, (r, code, field) in cases.items():
        assert (r.status_code, r.json().get("field")) == (code, field), (name, r.text)
