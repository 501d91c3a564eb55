"""Saved searches over HTTP: each user's own, replaced by name, deleted; bad criteria refused."""

from __future__ import annotations

MORNING = {"location": "BER1", "category": "SUV", "features": ["towbar"], "duration_hours": 24}


def test_each_user_sees_only_their_saved_searches(api):
    with api.client("agent") as c:
        saved = c.post("/api/saved-searches", json={"name": " Morning SUVs ", "criteria": MORNING})
        c.post("/api/saved-searches", json={"name": "Airport", "criteria": {"location": "BER1"}})
        mine = c.get("/api/saved-searches").json()
    with api.client("analyst") as c:
        theirs = c.get("/api/saved-searches").json()
        c.post("/api/saved-searches", json={"name": "Airport", "criteria": {"location": "MUC1"}})
    assert saved.status_code == 201, saved.text
    assert (saved.json()["name"], saved.json()["criteria"]) == ("Morning SUVs", MORNING)
    assert saved.json()["user_id"] == api.users["agent"].id
    assert [s["name"] for s in mine] == ["Airport", "Morning SUVs"]
    assert theirs == []
    with api.client("agent") as c:
        airport = [s for s in c.get("/api/saved-searches").json() if s["name"] == "Airport"]
    assert airport[0]["criteria"] == {"location": "BER1"}  # the analyst's did not touch it


def test_saving_under_the_same_name_replaces_and_delete_removes(api):
    with api.client("manager") as c:
        c.post("/api/saved-searches", json={"name": "Daily", "criteria": MORNING})
        c.post("/api/saved-searches", json={"name": "Daily", "criteria": {"category": "ECON"}})
        listed = c.get("/api/saved-searches").json()
        gone = c.delete("/api/saved-searches/Daily")
        again = c.delete("/api/saved-searches/Daily")
        left = c.get("/api/saved-searches").json()
    assert [(s["name"], s["criteria"]) for s in listed] == [("Daily", {"category": "ECON"})]
    assert gone.status_code == 204
    assert again.status_code == 404 and again.json()["field"] == "name"
    assert left == []


def test_saved_searches_need_a_signed_in_user(api):
    with api.client(None) as c:
        r = c.post("/api/saved-searches", json={"name": "x", "criteria": {}})
    assert r.status_code == 401


def test_bad_saved_search_input_names_the_field_and_never_500s(api):
    with api.client("agent") as c:
        cases = {
            "unknown criterion": (
                c.post("/api/saved-searches", json={"name": "x", "criteria": {"colour": "red"}}),
                "criteria.colour",
            ),
            "blank name": (
                c.post("/api/saved-searches", json={"name": "   ", "criteria": {}}),
                "name",
            ),
            "long name": (
                c.post("/api/saved-searches", json={"name": "n" * 81, "criteria": {}}),
                "name",
            ),
            "nul in name": (
                c.post("/api/saved-searches", json={"name": "a\x00b", "criteria": {}}),
                "name",
            ),
            "negative duration": (
                c.post(
                    "/api/saved-searches", json={"name": "x", "criteria": {"duration_hours": -1}}
                ),
                "criteria.duration_hours",
            ),
            "nul in path": (c.delete("/api/saved-searches/a%00b"), "name"),
        }
    for name, (r, field) in cases.items():
        assert (r.status_code, r.json().get("field")) == (422, field), (name, r.text)
