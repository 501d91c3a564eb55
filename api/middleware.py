"""ASGI middleware: request ids and access logs, metrics, load shedding, page sign-in."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import quote

from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import logs, metrics
from api.problems import problem_response
from api.security import page_principal

log = logging.getLogger("fleet.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Long-lived streams are not "in flight" work: they must not count against the shedding limit.
STREAM_PATHS = ("/api/availability/events",)
OPEN_PATHS = ("/healthz", "/readyz", "/login", "/logout", "/favicon.ico", "/counter")
# The API answers 401 problems itself; the counter app's shell holds no data (routes/counter.py).
OPEN_PREFIXES = ("/api/", "/metrics", "/counter/")


class RequestContext:
    """Give every request an id, log it once, time it by route, shed load when full."""

    def __init__(self, app: ASGIApp, max_in_flight: int) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _SAFE_ID.match(given) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        token = logs.request_id.set(rid)
        # A path may hold lone surrogates (undecodable %-escapes): logged escaped, never raw.
        path = scope["path"].encode("utf-8", "backslashreplace").decode("utf-8")
        counted = scope["type"] == "http" and not path.startswith(STREAM_PATHS)
        status = {"code": 0}
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            if counted and self.in_flight >= self.max_in_flight:
                metrics.SHED.inc()
                response = problem_response(
                    503,
                    "the server is busy",
                    code="overloaded",
                    hint="try again in a second",
                    headers={"Retry-After": "1"},
                )
                await response(scope, receive, send_with_id)
                return
            if counted:
                self.in_flight += 1
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                if counted:
                    self.in_flight -= 1
        finally:
            elapsed = time.perf_counter() - start
            route = _route_template(scope)
            if scope["type"] == "http":
                metrics.REQUEST_LATENCY.labels(scope["method"], route, str(status["code"])).observe(
                    elapsed
                )
            log.info(
                "%s %s %s %.1fms",
                scope.get("method", "WS"),
                path,
                status["code"],
                elapsed * 1000,
                extra={
                    "method": scope.get("method", "WS"),
                    "path": path,
                    "status": status["code"],
                    "duration_ms": round(elapsed * 1000, 1),
                    "user_id": scope["state"].get("user_id"),
                },
            )
            logs.request_id.reset(token)


def same_origin(scope: Scope) -> bool:
    """Whether a request's Origin (when it sends one) is this site's own host."""
    headers = dict(scope.get("headers") or [])
    origin = headers.get(b"origin", b"").decode("latin-1")
    host = headers.get(b"host", b"").decode("latin-1")
    if not origin:
        return True  # not a browser: no cookie was sent on its behalf by another site
    return bool(host) and origin.split("://", 1)[-1] == host


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return route.path
    # Unmatched paths (404s, Panel's own routes) share one label: no label per raw URL.
    return "panel" if not scope["path"].startswith("/api") else "unmatched"


async def _refuse_socket(
    scope: Scope, receive: Receive, send: Send, code: int, reason: str
) -> None:
    """Accept a WebSocket only to close it with a code the page's script can read.

    Closed before the handshake completes, a browser sees only a failed connection (an
    HTTP 403), the same as a server that is down.
    """
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    # A browser fails a handshake that picks none of the subprotocols it offered.
    offered = scope.get("subprotocols") or [None]
    await send({"type": "websocket.accept", "subprotocol": offered[0]})
    await send({"type": "websocket.close", "code": code, "reason": reason})


class PageSignIn:
    """Pages, their assets and Panel's WebSocket need a signed-in browser session.

    Who signed in is handed to the page through `security.page_principal`, never through the
    Bokeh session (see dashboard/app.py). Panel's WebSocket must come from our own pages:
    browsers send cookies on cross-site WebSocket handshakes, so the Origin is checked here.
    """

    def __init__(self, app: ASGIApp, resolve: Any) -> None:
        self.app = app
        self.resolve = resolve  # scope -> Principal or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(OPEN_PREFIXES) or path in OPEN_PATHS:
            await self.app(scope, receive, send)  # the API answers 401 problems itself
            return
        if scope["type"] == "websocket":
            if not same_origin(scope):
                await _refuse_socket(scope, receive, send, 4403, "cross-origin")
                return
            if "bokeh" not in scope.get("subprotocols", ()):
                # Bokeh raises on such a handshake (a traceback per probe): say it plainly.
                await _refuse_socket(scope, receive, send, 4400, "not a page session handshake")
                return
        principal = await self.resolve(scope)
        if principal is not None:
            token = page_principal.set(principal)
            try:
                await self.app(scope, receive, send)
            finally:
                page_principal.reset(token)
            return
        if scope["type"] == "websocket":
            await _refuse_socket(scope, receive, send, 4401, "sign in first")
            return
        query = scope.get("query_string", b"").decode("latin-1")
        target = path + (f"?{query}" if query else "")
        response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        await response(scope, receive, send)
