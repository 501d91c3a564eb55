"""The lab's programs on the client host and at the switch (run with `ip netns exec`).

    python -m tests.network.clients wait URL...                 until every server is ready
    python -m tests.network.clients streams OUT TOKEN SINCE N URL...
        N WebSocket and N SSE clients per server; each resumes from its last seq after any
        drop and writes one JSON line per state change and per event received to OUT
    python -m tests.network.clients write OUT TOKEN RATE URL=V1,V2 ...
        a steady writer per server: status changes of its own vehicles, RATE a second

They behave as a careful real client would: a stream silent for DEAD_AFTER (a few heartbeat
intervals) is dead; reconnecting tries again every RETRY seconds with a short TCP connect
timeout, so a link that comes back is used within about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
import time
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

# The harness runs the servers with a 1 s heartbeat; three missed ones mean "dead" (two is
# the documented minimum; one more keeps 5 % loss at 600 ms round trips from tripping it).
DEAD_AFTER = 3.0
TCP_CONNECT_TIMEOUT = 1.0
# Upgrade + hello (or response headers + hello) over a slow link, after TCP is up.
HANDSHAKE_TIMEOUT = 6.0
RETRY = 0.25


class Recorder:
    """JSON lines, flushed at once: the test reads the file while the clients run."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def __call__(self, client: str, **fields: Any) -> None:
        self.out.write(json.dumps({"c": client, "t": time.time(), **fields}) + "\n")
        self.out.flush()


async def _tcp(url: str) -> socket.socket:
    """A connected socket, or TimeoutError quickly: SYN retries must not wait for seconds."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(TCP_CONNECT_TIMEOUT):
            await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    except BaseException:
        sock.close()
        raise
    return sock


async def ws_client(name: str, base: str, token: str, since: int, rec: Recorder) -> None:
    seq = since
    while True:
        rec(name, state="connecting")
        ws: ClientConnection | None = None
        reason = "?"
        try:
            sock = await _tcp(base)
            url = base.replace("http://", "ws://") + f"/api/availability/realtime?since={seq}"
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                ws = await connect(
                    url,
                    sock=sock,
                    additional_headers={"Authorization": f"Bearer {token}"},
                    # The stream's own heartbeats tell liveness; no extra pings.
                    ping_interval=None,
                    close_timeout=0.5,
                    open_timeout=None,
                )
                hello = json.loads(await ws.recv())
            rec(name, state="connected", hello=hello.get("seq"))
            live = True
            while True:
                async with asyncio.timeout(DEAD_AFTER):
                    message = json.loads(await ws.recv())
                kind = message["type"]
                if kind == "event":
                    rec(name, seq=message["seq"])
                    seq = message["seq"]
                elif kind == "batch":
                    for m in message["events"]:
                        rec(name, seq=m["seq"])
                    seq = message["seq"]
                elif kind == "heartbeat" and message.get("live", True) != live:
                    live = message.get("live", True)
                    rec(name, state="live" if live else "server-offline")
                elif kind in ("reload", "unauthorized"):
                    rec(name, state=kind, message=message)
                    return
        except TimeoutError:
            reason = "silent" if ws is not None else "connect timeout"
        except ConnectionClosed as exc:
            reason = f"closed {exc.rcvd.code if exc.rcvd else 'without a close frame'}"
        except (OSError, InvalidHandshake) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            if ws is not None:
                with contextlib.suppress(Exception):
                    ws.transport.abort()  # no close handshake over a dead link
        rec(name, state="reconnecting", reason=reason)
        await asyncio.sleep(RETRY)


async def sse_client(name: str, base: str, token: str, since: int, rec: Recorder) -> None:
    seq = since
    while True:
        rec(name, state="connecting")
        reason = "?"
        connected = False
        try:
            timeout = httpx.Timeout(HANDSHAKE_TIMEOUT, connect=TCP_CONNECT_TIMEOUT, read=DEAD_AFTER)
            async with (
                httpx.AsyncClient(base_url=base, timeout=timeout, trust_env=False) as client,
                client.stream(
                    "GET",
                    "/api/availability/events",
                    headers={"Authorization": f"Bearer {token}", "Last-Event-ID": str(seq)},
                ) as r,
            ):
                if r.status_code != 200:
                    reason = f"HTTP {r.status_code}"
                    raise _Retry
                frame: dict[str, str] = {}
                live = True
                async for line in r.aiter_lines():
                    if line:
                        key, _, value = line.partition(":")
                        frame[key] = value.lstrip(" ")
                        continue
                    kind = frame.get("event", "message")
                    data = json.loads(frame["data"]) if "data" in frame else None
                    frame = {}
                    if data is None:  # `retry:` alone
                        continue
                    if kind == "hello":
                        connected = True
                        rec(name, state="connected", hello=data.get("seq"))
                    elif kind == "message":
                        rec(name, seq=data["seq"])
                        seq = data["seq"]
                    elif kind == "batch":
                        for m in data["events"]:
                            rec(name, seq=m["seq"])
                        seq = data["seq"]
                    elif kind == "heartbeat" and data.get("live", True) != live:
                        live = data.get("live", True)
                        rec(name, state="live" if live else "server-offline")
                    elif kind in ("reload", "unauthorized"):
                        rec(name, state=kind, message=data)
                        return
                reason = "stream ended"  # the server ends it with `retry:` when its DB is away
        except _Retry:
            pass
        except httpx.ReadTimeout:
            reason = "silent" if connected else "no hello"
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}"
        rec(name, state="reconnecting", reason=reason)
        await asyncio.sleep(RETRY)


class _Retry(Exception):
    pass


async def streams(out: str, token: str, since: int, per_server: int, urls: list[str]) -> None:
    with open(out, "a") as f:
        rec = Recorder(f)
        tasks = []
        for s, url in enumerate(urls, start=1):
            for i in range(per_server):
                tasks.append(ws_client(f"srv{s}-ws{i}", url, token, since, rec))
                tasks.append(sse_client(f"srv{s}-sse{i}", url, token, since, rec))
        await asyncio.gather(*tasks)


async def writer(name: str, url: str, token: str, vehicles: list[int], rate: float, rec: Recorder):
    """Toggle its vehicles between available and cleaning, one change every 1/rate s."""
    current = dict.fromkeys(vehicles, "available")
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=httpx.Timeout(3.0, connect=1.0), trust_env=False
    ) as client:
        n = 0
        next_at = time.monotonic()
        while True:
            v = vehicles[n % len(vehicles)]
            n += 1
            new = "cleaning" if current[v] == "available" else "available"
            started = time.time()
            try:
                r = await client.put(
                    f"/api/vehicles/{v}/status", json={"status": new, "reason": "netcut"}
                )
                code: int | str = r.status_code
                if r.status_code == 200:
                    current[v] = new
                else:
                    # A change that timed out here may still have committed: read back.
                    got = await client.get(f"/api/vehicles/{v}/status")
                    if got.status_code == 200:
                        current[v] = got.json()["status"]
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            rec(name, start=started, code=code)
            next_at = max(next_at + 1 / rate, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())


async def write(out: str, token: str, rate: float, specs: list[str]) -> None:
    with open(out, "a") as f:
        rec = Recorder(f)
        tasks = []
        for s, spec in enumerate(specs, start=1):
            url, _, ids = spec.partition("=")
            tasks.append(
                writer(f"writer{s}", url, token, [int(i) for i in ids.split(",")], rate, rec)
            )
        await asyncio.gather(*tasks)


def wait(urls: list[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} is not ready after {timeout} s")
            time.sleep(0.3)


def main(argv: list[str]) -> None:
    # SIGTERM ends the program normally, so the last lines are flushed and files closed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    command, args = argv[0], argv[1:]
    if command == "wait":
        wait(args)
    elif command == "streams":
        asyncio.run(streams(args[0], args[1], int(args[2]), int(args[3]), args[4:]))
    elif command == "write":
        asyncio.run(write(args[0], args[1], float(args[2]), args[3:]))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
