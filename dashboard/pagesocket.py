"""The pages' Bokeh WebSocket (bokeh-fastapi's handler), made to notice a browser that left.

bokeh-fastapi 0.1.8 has two gaps (bokeh/bokeh-fastapi#19) that quick navigation between pages
hits on every few clicks:

- A write to a socket the browser has just closed (the heartbeat, a pushed event) detaches the
  Bokeh session from the connection, while the messages the browser sent before it left are
  still queued for the receive loop. Bokeh then handles each against no session and logs an
  `AssertionError` traceback per message. Those messages have no one to answer: drop them.
- A browser that closes the socket normally is never reported lost, so its session is never
  discarded and its `on_session_destroyed` callbacks (which stop the page's event feed and
  credential watch) never run. Report it when the handler returns.

And one of Panel's: a page whose socket opens more than 15 s after its HTML was served (a slow
mobile link still fetching the scripts, a busy server) finds its session discarded as unused.
Bokeh then builds a new one from the socket's raw ASGI scope, which Panel cannot read
(`AttributeError` in `panel/io/location.py`), and the page stays white. Build it instead from
a request like the page's own, so the page comes up as if it had been quick.

Panel patches the same class for its route context; `install` patches it once more, once.
"""

from __future__ import annotations

from typing import Any

from bokeh.util.token import get_session_id
from bokeh_fastapi.handler import WSHandler
from fastapi import WebSocket
from tornado.httputil import HTTPHeaders, HTTPServerRequest

_PATCHED = "_fleet_patched"
# Page sockets this process is serving (all apps): a socket counts until its handler returned
# and its session was released, so nothing it received is still waiting to be handled.
_open = 0


def open_sockets() -> int:
    """Return how many page WebSockets this process is serving now."""
    return _open


def install() -> None:
    """Patch bokeh-fastapi's WebSocket handler (idempotent)."""
    if getattr(WSHandler, _PATCHED, False):
        return
    handle = WSHandler._handle
    connect = WSHandler.ws_connect
    open_session = WSHandler._async_open  # Panel's, which adds the route to the token

    async def handle_while_attached(self: WSHandler, message: Any) -> Any:
        connection = self.connection
        if connection is None or connection._session is None:
            return None  # the browser has gone: nothing to apply, no one to answer
        return await handle(self, message)

    async def connect_then_release(self: WSHandler, websocket: WebSocket) -> None:
        global _open
        _open += 1
        try:
            await connect(self, websocket)
        finally:
            # client_lost is safe twice: a failed write may already have reported it.
            if self.connection is not None:
                self.application.client_lost(self.connection)
            _open -= 1

    async def open_or_rebuild(self: WSHandler, socket: WebSocket, token: str) -> None:
        context = self.application_context
        session_id = get_session_id(token)
        if session_id not in context._sessions and session_id not in context._pending_sessions:
            # Cookies and headers stay out of the token (dashboard/app.py): the request only
            # says where the page is; who is signed in comes from the middleware's check.
            await context.create_session_if_needed(session_id, _page_request(socket), token)
        await open_session(self, socket, token)

    WSHandler._handle = handle_while_attached
    WSHandler.ws_connect = connect_then_release
    WSHandler._async_open = open_or_rebuild
    setattr(WSHandler, _PATCHED, True)


def _page_request(socket: WebSocket) -> HTTPServerRequest:
    """A request for the page a socket belongs to (`/board/ws` belongs to `/board`)."""
    scope = socket.scope
    path = scope["path"].removesuffix("/ws") or "/"
    headers = HTTPHeaders({"Host": socket.headers.get("host", "")})
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    request = HTTPServerRequest(method="GET", uri=path, headers=headers, host=headers["Host"])
    request.protocol = scheme
    request.route_params = scope.get("route_params", {})
    request.app_path = scope.get("app_path", path)
    return request
