"""Sign-in throttled per username and per address; malformed secrets are a 403, never a 500."""

from __future__ import annotations

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from api.app import create_app
from db import auth, fleet
from tests.api.conftest import PASSWORD, ServerThread, free_port, server_settings

PER_USER = 3
PER_ADDRESS = 6


@pytest.fixture(scope="module")
def strict_server(database_url, tmp_path_factory):
    """A server with low sign-in limits (the shared one allows a test suite's worth)."""
    settings = server_settings(
        database_url,
        tmp_path_factory.mktemp("throttled"),
        login_attempts_per_minute=PER_USER,
        login_attempts_per_address_per_minute=PER_ADDRESS,
    )
    server = ServerThread(create_app(settings, pages=False), free_port()).start()
    yield server
    server.stop()


def _from(address: str, base: str) -> httpx.Client:
    """A client whose connections come from this loopback address (127.0.0.0/8 is all ours)."""
    return httpx.Client(
        base_url=base, transport=httpx.HTTPTransport(local_address=address), timeout=20
    )


def _form_attempt(c: httpx.Client, username: str, password: str) -> httpx.Response:
    c.get("/login")
    return c.post(
        "/login",
        data={"username": username, "password": password, "csrf": c.cookies["fleet_login_csrf"]},
    )


def test_the_form_answers_a_throttled_attempt_with_the_form_and_a_sentence(api, strict_server):
    username = api.users["analyst"].username
    with _from("127.0.0.11", strict_server.url) as c:
        tries = [_form_attempt(c, username, "wrong") for _ in range(PER_USER)]
        throttled = _form_attempt(c, username, PASSWORD)  # even the right password waits
    assert [r.status_code for r in tries] == [401] * PER_USER
    assert throttled.status_code == 429
    assert throttled.headers["content-type"].startswith("text/html")
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    assert f"Too many attempts; try again in {throttled.headers['retry-after']} s." in (
        throttled.text
    )
    assert 'id="username"' in throttled.text and "fleet_session" not in throttled.cookies
    # The username is throttled from any address: guessing from many machines is no faster.
    with _from("127.0.0.12", strict_server.url) as other:
        r = other.post("/api/auth/token", json={"username": username, "password": PASSWORD})
    assert r.status_code == 429
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1


def test_a_flood_of_usernames_from_one_address_is_throttled_and_locks_no_one_out(
    api, engine, strict_server
):
    with engine.begin() as c:
        victims = [
            fleet.create_user(c, username=f"sweep-{i}", full_name=f"Sweep {i}") for i in range(12)
        ]
    with _from("127.0.0.21", strict_server.url) as attacker:
        codes = [
            attacker.post(
                "/api/auth/token", json={"username": v.username, "password": "guess"}
            ).status_code
            for v in victims
        ]
    # Every name was new, yet the address ran out of attempts.
    assert codes[:PER_ADDRESS] == [401] * PER_ADDRESS
    assert set(codes[PER_ADDRESS:]) == {429}
    # The names the attacker tried once the address was throttled did not count against them:
    # their owners sign in as usual (here: set a password first, as an admin would).
    late = victims[-1]
    with engine.begin() as c:
        auth.set_password(c, user_id=late.id, password=PASSWORD)
    with _from("127.0.0.22", strict_server.url) as office:
        r = office.post("/api/auth/token", json={"username": late.username, "password": PASSWORD})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "token",
    ["é" * 20, "\u202e" + "a" * 20, "tok\x00en", "\ud800x"],
    ids=["latin", "bidi", "nul", "surrogate"],
)
def test_a_malformed_csrf_token_is_403_not_500(api, token):
    c = api.login("agent")
    try:
        car = api.vehicles[0]
        # Headers travel as bytes: what a client sends that is not ASCII arrives as such.
        sent = token.encode("utf-8", "surrogatepass").replace(b"\x00", b"")
        r = c.put(
            f"/api/vehicles/{car.id}/status",
            json={"status": "cleaning", "reason": "x"},
            headers={"X-CSRF-Token": sent},
        )
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "csrf_failed"
    finally:
        c.close()
    with httpx.Client(base_url=api.url) as anon:
        anon.get("/login")
        r = anon.post(
            "/login",
            data={
                "username": api.users["agent"].username,
                "password": PASSWORD,
                "csrf": token.encode("utf-8", "surrogatepass").decode("latin-1"),
            },
        )
    assert r.status_code == 403 and "Your sign-in form expired" in r.text


def _socket_close(url: str, **kwargs) -> int | None:
    """Open a WebSocket; return the close code the server sent (None: it stayed open)."""
    try:
        with connect(url, **kwargs) as ws:
            ws.recv(timeout=5)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    except TimeoutError:
        return None
    raise AssertionError("the server sent a message on a refused socket")


def test_a_page_socket_from_another_site_is_refused_with_a_code(api):
    c = api.login("agent")
    try:
        cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    finally:
        c.close()
    url = api.url.replace("http://", "ws://") + "/board/ws"
    offered = {"subprotocols": ["bokeh", "not-a-session-token"]}
    # Browsers send cookies on cross-site handshakes: another site's page gets 4403.
    evil = {"Cookie": cookie, "Origin": "https://evil.example"}
    assert _socket_close(url, additional_headers=evil, **offered) == 4403
    # Without the session cookie: 4401, sign in first.
    assert _socket_close(url, additional_headers={"Origin": api.url}, **offered) == 4401
    # Our own origin with no Bokeh handshake: 4400 (Bokeh would raise on it).
    assert _socket_close(url, additional_headers={"Cookie": cookie, "Origin": api.url}) == 4400
