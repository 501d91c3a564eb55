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

Panel patches the same class for its route context; `install` patches it once more, once.
"""

from __future__ import annotations

from typing import Any

from bokeh_fastapi.handler import WSHandler
from fastapi import WebSocket

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

    WSHandler._handle = handle_while_attached
    WSHandler.ws_connect = connect_then_release
    setattr(WSHandler, _PATCHED, True)
