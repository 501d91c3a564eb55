"""Every route, tried without good credentials, with the wrong role and without CSRF.

Routes come from the served OpenAPI document at run time, plus what it leaves out: the pages,
their WebSockets and assets, the counter app, sign-in and the operations endpoints.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi.routing import APIRoute
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from api.security import CSRF_COOKIE, CSRF_HEADER, READERS, SESSION_COOKIE, Signer
from dashboard.app import PAGES
from tests.security.conftest import Sweep
from tests.security.routes import (
    Examples,
    Operation,
    Schemas,
    fill_path,
    operations,
    request_schema,
)

# Served beside the document, not in it: each must refuse a caller without a session.
UNDOCUMENTED = ("/api/openapi.json", "/api/docs")
PAGE_PATHS = ("/", *PAGES, "/labels")
OPEN_PATHS = ("/healthz", "/readyz", "/login", "/counter/", "/counter/app.js", "/favicon.ico")


@contextmanager
def signed_in(sweep: Sweep, role: str) -> Iterator[httpx.Client]:
    """A browser-like client signed in through the form (session and CSRF cookies)."""
    client = sweep.api.login(role)
    try:
        yield client
    finally:
        client.close()


def bad_credentials(sweep: Sweep) -> dict[str, dict[str, str]]:
    """Request headers for each way of asking without a good credential."""
    with signed_in(sweep, "agent") as browser:
        real = browser.cookies[SESSION_COOKIE]
    # The signature is the last dot-separated part: change one character of it.
    last = "A" if real[-2] != "A" else "B"
    tampered = real[:-2] + last + real[-1]
    forged = Signer("someone-elses-key-" + secrets.token_hex(8), 3600).cookie_value(
        secrets.token_urlsafe(32)
    )
    return {
        "anonymous": {},
        "garbage token": {"Authorization": "Bearer not-a-token"},
        "wrong scheme": {"Authorization": "Basic c3dlZXA6c3dlZXA="},
        "empty bearer": {"Authorization": "Bearer"},
        "expired token": {"Authorization": f"Bearer {sweep.expired}"},
        "revoked token": {"Authorization": f"Bearer {sweep.revoked}"},
        "forged cookie": {"Cookie": f"{SESSION_COOKIE}={forged}"},
        "tampered cookie": {"Cookie": f"{SESSION_COOKIE}={tampered}"},
        "garbage cookie": {"Cookie": f"{SESSION_COOKIE}=%00%ff{'x' * 300}"},
    }


def body_for(op: Operation, schemas: Schemas, ex: Examples) -> Any:
    schema = request_schema(op)
    return None if schema is None else schemas.example(schema, ex)


def send(client: httpx.Client, op: Operation, sweep: Sweep, **kwargs: Any) -> httpx.Response:
    """Send the operation with example inputs from its own schema."""
    ex = Examples(sweep.ids)
    body = body_for(op, Schemas(sweep.document), ex)
    return client.request(op.method.upper(), fill_path(op, ex), json=body, **kwargs)


def leaked(sweep: Sweep, response: httpx.Response) -> list[str]:
    return [s for s in sweep.secrets if s in response.text]


def asset_paths(sweep: Sweep) -> list[str]:
    """The scripts, styles and icons a signed-in page loads from this server."""
    with signed_in(sweep, "agent") as browser:
        page = browser.get("/board").text
    # Panel writes them relative to the page ("static/js/bokeh.min.js?v=...").
    found = re.findall(r"""(?:src|href)=["'](?:\./|/)?(static/[^"'?#]+|favicon\.ico)""", page)
    # Panel's component route too, with names that resolve to nothing or climb out.
    broken = ["/components/no.such.module/x.js", "/components/..%2F..%2Fetc%2Fpasswd"]
    return sorted({f"/{p}" for p in found}) + broken


def test_no_route_gives_data_or_5xx_without_good_credentials(sweep: Sweep) -> None:
    ops = operations(sweep.document)
    assert len(ops) > 20, "the served document lists too few operations to be the real one"
    assets = asset_paths(sweep)
    assert any(p.startswith("/static/") for p in assets), assets
    problems: list[str] = []
    for name, headers in bad_credentials(sweep).items():
        with httpx.Client(base_url=sweep.api.url, headers=headers, timeout=20) as client:
            for op in ops:
                r = send(client, op, sweep)
                if r.status_code >= 500 or leaked(sweep, r):
                    problems.append(f"{name}: {op.id} -> {r.status_code} {r.text[:120]}")
                elif not op.is_open and r.status_code != 401:
                    problems.append(f"{name}: {op.id} -> {r.status_code}, not 401")
            for path in UNDOCUMENTED:
                r = client.get(path)
                if r.status_code != 401 or leaked(sweep, r):
                    problems.append(f"{name}: GET {path} -> {r.status_code}, not 401")
            for path in PAGE_PATHS:
                r = client.get(path, params={"id": str(sweep.ids["vehicle_id"])})
                where = r.headers.get("location", "")
                if r.status_code != 303 or not where.startswith("/login") or leaked(sweep, r):
                    problems.append(f"{name}: page {path} -> {r.status_code} {where}")
            for path in (*OPEN_PATHS, *assets):
                r = client.get(path)
                if r.status_code >= 500 or leaked(sweep, r):
                    problems.append(f"{name}: GET {path} -> {r.status_code}")
            for path in ("/logout", "/api/auth/logout"):
                r = client.post(path)
                if r.status_code >= 500:
                    problems.append(f"{name}: POST {path} -> {r.status_code}")
    assert problems == []


def close_code(url: str, headers: dict[str, str], subprotocols: list[str] | None) -> Any:
    """Open a WebSocket and return how it ended: a close code, or the refused status."""
    try:
        with connect(
            url, additional_headers=headers, subprotocols=subprotocols, open_timeout=10
        ) as ws:
            try:
                first = ws.recv(timeout=10)
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None
            return f"data: {str(first)[:80]}"
    except InvalidStatus as refused:
        return f"HTTP {refused.response.status_code}"


def test_no_stream_opens_without_good_credentials(sweep: Sweep) -> None:
    base = sweep.api.url.replace("http://", "ws://")
    problems: list[str] = []
    for name, headers in bad_credentials(sweep).items():
        token = headers.get("Authorization", "").partition(" ")[2]
        cookie = {"Cookie": headers["Cookie"]} if "Cookie" in headers else {}
        query = f"?access_token={token}" if token else ""
        ended = close_code(f"{base}/api/availability/realtime{query}", headers, None)
        if ended != 4401:
            problems.append(f"{name}: /api/availability/realtime ended with {ended}")
        for path in PAGES:
            ended = close_code(f"{base}{path}/ws", cookie, ["bokeh", "sweep-token"])
            if ended != 4401:
                problems.append(f"{name}: {path}/ws ended with {ended}")
        with httpx.Client(base_url=sweep.api.url, headers=headers, timeout=20) as client:
            r = client.get(f"/api/availability/events{query}")
            if r.status_code != 401 or "data:" in r.text:
                problems.append(f"{name}: event stream -> {r.status_code} {r.text[:80]}")
    assert problems == []


def route_roles(app: Any, method: str, path: str) -> tuple[str, ...] | None:
    """Return the roles a route's `require(...)` admits, or None when any caller may call."""
    for route in app.routes:
        candidates = [route]
        if not isinstance(route, APIRoute):
            candidates = getattr(getattr(route, "original_router", None), "routes", [])
        for r in candidates:
            if isinstance(r, APIRoute) and r.path == path and method.upper() in r.methods:
                return _roles(r.dependant)
    raise LookupError(f"{method.upper()} {path} is in the document but not served")


def _roles(dependant: Any) -> tuple[str, ...] | None:
    for dep in dependant.dependencies:
        code = getattr(dep.call, "__code__", None)
        if code is not None and "roles" in code.co_freevars:
            cell = dep.call.__closure__[code.co_freevars.index("roles")]
            return tuple(cell.cell_contents)
        found = _roles(dep)
        if found is not None:
            return found
    return None


def test_every_role_limited_route_refuses_the_other_roles(sweep: Sweep, live_server) -> None:
    app = live_server.server.config.app
    checked = 0
    problems: list[str] = []
    clients = {role: sweep.api.client(role) for role in READERS}
    try:
        for op in operations(sweep.document):
            if op.is_open:
                continue
            roles = route_roles(app, op.method, op.path)
            if roles is None:
                continue
            for role in set(READERS) - set(roles):
                checked += 1
                r = send(clients[role], op, sweep)
                if r.status_code != 403 or leaked(sweep, r):
                    problems.append(f"{role}: {op.id} -> {r.status_code} {r.text[:120]}")
    finally:
        for c in clients.values():
            c.close()
    assert checked > 10, "no route limited to some roles was found to try"
    assert problems == []


def csrf_variants() -> Iterator[tuple[str, dict[str, Any]]]:
    yield "no token", {}
    yield "wrong token", {CSRF_HEADER: "0" * 64}
    yield "non-ASCII token", {CSRF_HEADER: "é∂ƒ".encode()}
    yield "empty token", {CSRF_HEADER: ""}


def test_cookie_writes_without_their_csrf_token_are_refused(sweep: Sweep) -> None:
    writes = [op for op in operations(sweep.document) if op.cookie_needs_csrf]
    assert writes, "the document marks no cookie write as needing CSRF"
    problems: list[str] = []
    with signed_in(sweep, "admin") as browser:
        assert browser.cookies.get(CSRF_COOKIE)
        for name, headers in csrf_variants():
            for op in writes:
                r = send(browser, op, sweep, headers=headers)
                code = r.json().get("code") if r.status_code == 403 else None
                if code != "csrf_failed":
                    problems.append(f"{name}: {op.id} -> {r.status_code} {r.text[:120]}")
            r = browser.post("/logout", headers=headers, follow_redirects=False)
            if r.status_code != 403:
                problems.append(f"{name}: POST /logout -> {r.status_code}")
        # The session is still good: the refused sign-out above ended nothing.
        assert browser.get("/api/auth/me").status_code == 200
    assert problems == []
