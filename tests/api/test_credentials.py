"""What ends a credential ends what it opened: REST, WebSocket and SSE, on every process."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from bokeh.util.token import get_token_payload
from sqlalchemy import text
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from dashboard.app import PAGES
from db import auth
from tests.api.conftest import PASSWORD
from tests.api.streams_client import open_ws, ws_url
from tests.api.test_processes import second_server  # noqa: F401 - fixture

# The watch checks every 2 s by default; the promise to users is 5 s.
PROMISE = 5.0


def _new_token(engine, user_id: int, *, lifetime: timedelta = timedelta(hours=1)) -> tuple:
    with engine.begin() as c:
        issued = auth.issue_token(c, user_id=user_id, kind="api", lifetime=lifetime, label="t")
    return issued.token, issued.info.id


def _revoke_via_api(api, token: str, token_id: int, engine, user) -> None:
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.delete(f"/api/auth/tokens/{token_id}").status_code == 204


def _revoke_like_the_cli(api, token: str, token_id: int, engine, user) -> None:
    # `fleet user revoke` is another process writing the table: no server hears of it.
    with engine.begin() as c:
        auth.revoke_token(c, token_id=token_id)


def _change_password(api, token: str, token_id: int, engine, user) -> None:
    with engine.begin() as c:
        auth.set_password(c, user_id=user.id, password=PASSWORD)


def _deactivate(api, token: str, token_id: int, engine, user) -> None:
    with engine.begin() as c:
        auth.set_active(c, user_id=user.id, active=False)


CAUSES: dict[str, Callable] = {
    "revoked through the API": _revoke_via_api,
    "revoked by the CLI": _revoke_like_the_cli,
    "password changed": _change_password,
    "user deactivated": _deactivate,
}
REASONS = {
    "revoked through the API": "the token was revoked",
    "revoked by the CLI": "you were signed out or the token was revoked",
    "password changed": "your password was changed",
    "user deactivated": "your account was deactivated",
}


def _ws_end(
    base: str, token: str, *, watch: float = PROMISE + 5
) -> tuple[Callable[[], None], dict]:
    """Open a WebSocket; return a reader and what it saw when the server closed it.

    The reader gives up after `watch` seconds with the socket still open.
    """
    ws = open_ws(base, token)
    seen: dict = {}

    def wait() -> None:
        start = time.monotonic()
        while time.monotonic() - start < watch:
            try:
                message = json.loads(ws.recv(timeout=1))
            except TimeoutError:
                continue
            except ConnectionClosed as closed:
                seen["code"] = closed.rcvd.code if closed.rcvd else None
                seen["after"] = time.monotonic() - seen["t0"]
                return
            if message["type"] == "unauthorized":
                seen["message"] = message
        ws.close()

    return wait, seen


def _sse_end(base: str, token: str) -> tuple[Callable[[], None], dict]:
    seen: dict = {"frames": []}
    client = httpx.Client(base_url=base, timeout=httpx.Timeout(15, read=PROMISE + 5))
    stream = client.stream(
        "GET", "/api/availability/events", headers={"Authorization": f"Bearer {token}"}
    )
    response = stream.__enter__()
    assert response.status_code == 200
    lines = response.iter_lines()
    # The stream is open once its first frame (retry, hello) has arrived.
    while next(lines) != "":
        pass

    def wait() -> None:
        try:
            for line in lines:
                if line.startswith("event:"):
                    seen["frames"].append(line.split(":", 1)[1].strip())
                if line.startswith("data:") and seen["frames"][-1:] == ["unauthorized"]:
                    seen["message"] = json.loads(line[5:])
            seen["after"] = time.monotonic() - seen["t0"]
        finally:
            stream.__exit__(None, None, None)
            client.close()

    return wait, seen


@pytest.mark.parametrize("cause", list(CAUSES))
@pytest.mark.parametrize("channel", ["websocket", "sse"])
def test_ending_a_credential_closes_its_streams_within_five_seconds(api, engine, cause, channel):
    user = api.users["agent"]
    token, token_id = _new_token(engine, user.id)
    other, _ = _new_token(engine, api.users["manager"].id)
    wait, seen = (_ws_end if channel == "websocket" else _sse_end)(api.url, token)
    # Someone else's stream, watched for as long as the promise, stays open throughout.
    bystander, bystander_seen = _ws_end(api.url, other, watch=PROMISE)
    readers = [threading.Thread(target=wait), threading.Thread(target=bystander)]
    for reader in readers:
        reader.start()
    seen["t0"] = bystander_seen["t0"] = time.monotonic()
    CAUSES[cause](api, token, token_id, engine, user)
    readers[0].join(timeout=PROMISE + 6)
    assert "after" in seen, "the stream stayed open"
    assert seen["after"] <= PROMISE
    assert seen["message"]["type"] == "unauthorized"
    assert seen["message"]["reason"] == REASONS[cause]
    if channel == "websocket":
        assert seen["code"] == 4401
    else:
        assert seen["frames"][-1] == "unauthorized"
    # The same token is refused on REST at once, and a new stream is refused too.
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.get("/api/auth/me").status_code == 401
    with connect(ws_url(api.url), additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        with pytest.raises(ConnectionClosed) as refused:
            ws.recv(timeout=5)
        assert refused.value.rcvd.code == 4401
    readers[1].join(timeout=PROMISE + 6)
    assert "after" not in bystander_seen, "another user's stream was closed"


@pytest.mark.parametrize("channel", ["websocket", "sse"])
def test_a_stream_closes_when_its_token_expires(api, engine, channel):
    token, _ = _new_token(engine, api.users["agent"].id, lifetime=timedelta(seconds=3))
    wait, seen = (_ws_end if channel == "websocket" else _sse_end)(api.url, token)
    seen["t0"] = time.monotonic()
    wait()
    assert "after" in seen, "the stream outlived its token"
    assert seen["message"]["reason"] == "the session expired"
    assert seen["after"] <= 3 + PROMISE


def test_revoking_through_one_process_closes_streams_on_the_others(
    api,
    engine,
    second_server,  # noqa: F811 - fixture
):
    token, token_id = _new_token(engine, api.users["agent"].id)
    # Several sockets on the two-worker server land on both of its processes.
    ends = [_ws_end(second_server, token) for _ in range(4)]
    threads = [threading.Thread(target=w) for w, _ in ends]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    for _, seen in ends:
        seen["t0"] = t0
    _revoke_via_api(api, token, token_id, engine, api.users["agent"])
    for t in threads:
        t.join(timeout=PROMISE + 6)
    assert [seen.get("code") for _, seen in ends] == [4401] * 4
    assert max(seen["after"] for _, seen in ends) <= PROMISE


def test_cached_bearer_token_is_refused_the_moment_it_expires(api, engine):
    token, _ = _new_token(engine, api.users["agent"].id, lifetime=timedelta(seconds=2))
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.get("/api/auth/me").status_code == 200  # now in the server's token cache
        with engine.connect() as conn:
            left = conn.execute(
                text(
                    "SELECT extract(epoch FROM expires_at - now()) FROM auth_tokens"
                    " WHERE token_hash = sha256(convert_to(:t, 'UTF8'))"
                ),
                {"t": token},
            ).scalar_one()
        time.sleep(max(0.0, float(left)) + 0.05)
        r = c.get("/api/auth/me")
    assert r.status_code == 401, "the cache kept an expired token alive"


def test_pages_carry_no_cookie_or_authorization_in_their_session_token(api):
    c = api.login("manager")
    try:
        secrets = {c.cookies["fleet_session"], c.cookies["fleet_csrf"]}
        for path in [*PAGES, "/labels?location=BER1"]:
            r = c.get(path, headers={"Authorization": "Bearer not-a-real-token-but-secret"})
            assert r.status_code == 200, path
            page = r.text
            for secret in [*secrets, "not-a-real-token-but-secret"]:
                assert secret not in page, f"{path} carries a credential"
            tokens = re.findall(r'"token"\s*:\s*"([^"]+)"', page)
            if path.startswith("/labels"):
                continue  # plain HTML, no Bokeh session
            assert tokens, f"{path}: no Bokeh session token found"
            for token in tokens:
                payload = get_token_payload(token)
                assert payload.get("cookies", {}) == {}, path
                headers = {k.lower() for k in payload.get("headers", {})}
                assert not headers & {"cookie", "authorization", "x-csrf-token"}, path
    finally:
        c.close()


def test_signing_out_ends_the_browser_sessions_stream_at_once(api):
    c = api.login("agent")
    try:
        csrf = c.cookies["fleet_csrf"]
        seen: dict = {"frames": []}
        with c.stream(
            "GET", "/api/availability/events", headers={"Origin": api.url}, timeout=PROMISE + 5
        ) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            while next(lines) != "":  # the stream is open once its first frame has arrived
                pass
            with httpx.Client(base_url=api.url, cookies=c.cookies) as other_tab:
                assert other_tab.post("/logout", data={"csrf": csrf}).status_code == 303
            t0 = time.monotonic()
            for line in lines:
                if line.startswith("event:"):
                    seen["frames"].append(line.split(":", 1)[1].strip())
                if line.startswith("data:") and seen["frames"][-1:] == ["unauthorized"]:
                    seen["message"] = json.loads(line[5:])
            after = time.monotonic() - t0
    finally:
        c.close()
    assert seen["frames"][-1] == "unauthorized"
    assert seen["message"]["reason"] == "you signed out"
    assert after <= PROMISE
