"""Authentication and authorization over HTTP: cookies, CSRF, tokens, roles, limits."""

from __future__ import annotations

from contextlib import closing
from datetime import timedelta

import httpx
from sqlalchemy import text

from api.app import create_app
from db import auth
from tests.api.conftest import PASSWORD, ServerThread, free_port, server_settings


def test_no_credentials_gets_401_problem_everywhere_but_healthz(api):
    with httpx.Client(base_url=api.url, timeout=10) as c:
        for path in ("/api/vehicles", "/api/availability/realtime", "/metrics", "/api/auth/me"):
            r = c.get(path)
            assert r.status_code == 401, path
            assert r.json()["code"] == "not_authenticated"
            assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/healthz").status_code == 200
        page = c.get("/board")
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fboard"


def test_forged_expired_and_revoked_tokens_are_refused(api, engine):
    with engine.begin() as c:
        expired = auth.issue_token(
            c, user_id=api.users["agent"].id, kind="api", lifetime=timedelta(hours=1)
        )
        c.execute(
            text("UPDATE auth_tokens SET expires_at = now() - interval '1 second' WHERE id = :i"),
            {"i": expired.info.id},
        )
    for token in ("not-a-token", expired.token, api.tokens["agent"] + "x"):
        with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}) as c:
            assert c.get("/api/auth/me").status_code == 401
    with api.client("agent") as c:
        me = c.get("/api/auth/tokens").json()
        assert c.delete(f"/api/auth/tokens/{me[0]['id']}").status_code == 204
        assert c.get("/api/auth/me").status_code == 401  # revoked takes effect at once


def test_scheme_other_than_bearer_is_explained(api):
    with httpx.Client(base_url=api.url, headers={"Authorization": "Basic abc"}) as c:
        r = c.get("/api/auth/me")
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]


def test_token_from_password_works_and_wrong_password_does_not(api):
    with httpx.Client(base_url=api.url) as c:
        ok = c.post(
            "/api/auth/token",
            json={"username": api.users["manager"].username, "password": PASSWORD},
        )
        bad = c.post(
            "/api/auth/token",
            json={"username": api.users["manager"].username, "password": "wrong-password"},
        )
        me = c.get("/api/auth/me", headers={"Authorization": f"Bearer {ok.json()['access_token']}"})
    assert ok.status_code == 200 and me.json()["role"] == "manager"
    assert bad.status_code == 401 and "access_token" not in bad.text


def test_browser_session_reads_and_writes_with_csrf_header_only(api):
    v = api.vehicles[0]
    with closing(api.login("agent")) as browser:
        assert browser.get("/api/auth/me").json()["username"] == api.users["agent"].username
        body = {"status": "cleaning", "reason": "wash"}
        no_csrf = browser.put(f"/api/vehicles/{v.id}/status", json=body)
        wrong = browser.put(
            f"/api/vehicles/{v.id}/status", json=body, headers={"X-CSRF-Token": "0" * 64}
        )
        ok = browser.put(
            f"/api/vehicles/{v.id}/status",
            json=body,
            headers={"X-CSRF-Token": browser.cookies["fleet_csrf"]},
        )
        page = browser.get("/board")
    assert no_csrf.status_code == 403 and no_csrf.json()["code"] == "csrf_failed"
    assert wrong.status_code == 403
    assert ok.status_code == 200
    assert page.status_code == 200 and "<title>Fleet · Board</title>" in page.text


def test_tampered_session_cookie_is_refused(api):
    with closing(api.login("agent")) as browser:
        cookie = browser.cookies["fleet_session"]
    with httpx.Client(base_url=api.url, cookies={"fleet_session": cookie[:-2] + "xx"}) as c:
        assert c.get("/api/auth/me").status_code == 401
        assert c.get("/board").status_code == 303


def test_logout_revokes_the_session(api):
    browser = api.login("agent")
    cookie = browser.cookies["fleet_session"]
    r = browser.post("/logout", headers={"X-CSRF-Token": browser.cookies["fleet_csrf"]})
    assert r.status_code == 303
    with httpx.Client(base_url=api.url, cookies={"fleet_session": cookie}) as c:
        assert c.get("/api/auth/me").status_code == 401
    browser.close()


def test_login_form_refuses_missing_csrf_and_offsite_next(api):
    with httpx.Client(base_url=api.url) as c:
        forged = c.post(
            "/login", data={"username": api.users["agent"].username, "password": PASSWORD}
        )
        c.get("/login")
        r = c.post(
            "/login",
            data={
                "username": api.users["agent"].username,
                "password": PASSWORD,
                "csrf": c.cookies["fleet_login_csrf"],
                "next": "//evil.example/steal",
            },
        )
        escaped = c.get("/login", params={"next": '/"><script>alert(1)</script>'})
    assert forged.status_code == 403 and "fleet_session" not in forged.cookies
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "<script>alert(1)" not in escaped.text


def test_wrong_password_on_the_form_says_so_without_a_session(api):
    with httpx.Client(base_url=api.url) as c:
        c.get("/login")
        r = c.post(
            "/login",
            data={
                "username": api.users["agent"].username,
                "password": "nope-nope-nope",
                "csrf": c.cookies["fleet_login_csrf"],
            },
        )
    assert r.status_code == 401 and "wrong username or password" in r.text
    assert "fleet_session" not in r.cookies


def test_roles_are_checked_on_the_server(api):
    with api.client("analyst") as c:
        assert c.get("/api/vehicles").status_code == 200
        assert c.get("/metrics").status_code == 200
        denied = c.put(
            f"/api/vehicles/{api.vehicles[0].id}/status",
            json={"status": "cleaning", "reason": "x"},
        )
    assert denied.status_code == 403 and "analyst" in denied.json()["detail"]


def test_rate_limit_answers_429_with_retry_after(api, database_url, tmp_path):
    settings = server_settings(database_url, tmp_path, rate_limit_per_minute=5)
    server = ServerThread(create_app(settings, pages=False), free_port()).start()
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {api.tokens['agent']}"}
        ) as c:
            codes = [c.get("/api/auth/me") for _ in range(8)]
    finally:
        server.stop()
    assert [r.status_code for r in codes[:5]] == [200] * 5
    limited = codes[-1]
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["code"] == "rate_limited"


def test_overload_is_shed_with_503_not_queued(api, database_url, tmp_path):
    settings = server_settings(database_url, tmp_path, max_concurrent_requests=0)
    server = ServerThread(create_app(settings, pages=False), free_port()).start()
    try:
        r = httpx.get(f"{server.url}/api/vehicles", headers={"Authorization": "Bearer x"})
    finally:
        server.stop()
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["code"] == "overloaded"


def test_every_response_carries_a_request_id(api):
    with api.client("agent") as c:
        r = c.get("/api/vehicles/999999/status", headers={"X-Request-ID": "trace-42"})
    assert r.headers["x-request-id"] == "trace-42" and r.json()["request_id"] == "trace-42"


def test_expired_session_cookie_is_refused(api, engine):
    with closing(api.login("agent")) as browser:
        assert browser.get("/api/auth/me").status_code == 200
        with engine.begin() as c:
            c.execute(
                text(
                    "UPDATE auth_tokens SET expires_at = now() - interval '1 second'"
                    " WHERE user_id = :u AND kind = 'session'"
                ),
                {"u": api.users["agent"].id},
            )
        assert browser.get("/api/auth/me").status_code == 401
        assert browser.get("/board").status_code == 303  # pages send it back to /login
