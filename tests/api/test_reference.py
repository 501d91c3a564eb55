"""Reference data: the statuses a client may offer, as the engine enforces them."""

from __future__ import annotations

from db.status import TRANSITIONS


def test_statuses_list_every_allowed_change(api):
    with api.client("analyst") as c:
        r = c.get("/api/statuses")
    assert r.status_code == 200
    assert r.json() == {k: sorted(v) for k, v in TRANSITIONS.items()}
    assert "cleaning" in r.json()["rented"] and "rented" not in r.json()["cleaning"]


def test_statuses_need_a_signed_in_caller(api):
    with api.client(None) as c:
        assert c.get("/api/statuses").status_code == 401
