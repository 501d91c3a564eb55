"""Real stream clients for the tests: a WebSocket client and an SSE reader that resume."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
from websockets.sync.client import ClientConnection, connect

Message = dict[str, Any]


def ws_url(base: str, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return (
        base.replace("http://", "ws://")
        + "/api/availability/realtime"
        + (f"?{query}" if query else "")
    )


def open_ws(base: str, token: str | None, **params: Any) -> ClientConnection:
    """Connect and read the hello; the caller closes the connection."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ws = connect(
        ws_url(base, **params),
        additional_headers=headers,
        proxy=None,
        open_timeout=10,
    )
    hello = json.loads(ws.recv(timeout=10))
    assert hello["type"] == "hello"
    return ws


def read_until(
    ws: ClientConnection, done: Callable[[list[Message]], bool], timeout: float = 10.0
) -> list[Message]:
    """Collect event messages (batches unpacked) until done(events) or the timeout."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while not done(got):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            message = json.loads(ws.recv(timeout=left))
        except TimeoutError:
            break
        if message["type"] == "event":
            got.append(message)
        elif message["type"] == "batch":
            got.extend(message["events"])
    return got


class ResumingWsReader:
    """A client that remembers the last seq and resumes from it after every reconnect."""

    def __init__(self, base: str, token: str, since: int, **filters: Any) -> None:
        self.base, self.token, self.filters = base, token, filters
        self.seq = since
        self.events: list[Message] = []
        self.ws: ClientConnection | None = None

    def connect(self) -> None:
        self.ws = open_ws(self.base, self.token, since=self.seq, **self.filters)

    def drop(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    def read(self, seconds: float) -> None:
        """Read for up to `seconds`, reconnecting if the server closed the stream."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.ws is None:
                self.connect()
            try:
                message = json.loads(self.ws.recv(timeout=min(left, 0.5)))
            except TimeoutError:
                continue
            except Exception:  # closed by the server: resume like a real client would
                self.ws = None
                time.sleep(0.1)
                continue
            if message["type"] == "event":
                self.events.append(message)
                self.seq = message["seq"]


def sse_events(
    base: str,
    token: str,
    *,
    last_event_id: int | None = None,
    gzip: bool = True,
    until: Callable[[list[Message]], bool],
    timeout: float = 10.0,
    **params: Any,
) -> tuple[list[Message], list[str], httpx.Headers]:
    """Read the SSE stream; return its events, the event types seen, and response headers."""
    headers = {"Authorization": f"Bearer {token}"}
    headers["Accept-Encoding"] = "gzip" if gzip else "identity"
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    events: list[Message] = []
    kinds: list[str] = []
    deadline = time.monotonic() + timeout
    with (
        httpx.Client(base_url=base, timeout=httpx.Timeout(timeout, read=2.0)) as client,
        client.stream("GET", "/api/availability/events", headers=headers, params=params) as r,
    ):
        assert r.status_code == 200, r.read()
        for frame in _frames(r.iter_lines()):
            kinds.append(frame.get("event", "message"))
            if "data" in frame and frame.get("event", "message") == "message":
                message = json.loads(frame["data"])
                assert int(frame["id"]) == message["seq"]
                events.append(message)
            if until(events) or time.monotonic() > deadline:
                break
        return events, kinds, r.headers


def _frames(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    frame: dict[str, str] = {}
    for line in lines:
        if not line:
            if frame:
                yield frame
            frame = {}
            continue
        name, _, value = line.partition(":")
        frame[name] = value.lstrip(" ")
