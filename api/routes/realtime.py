"""Real-time availability: the snapshot with its sequence, the WebSocket and the SSE stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import DBAPIError

from api import security
from api.deps import transaction
from api.middleware import same_origin
from api.problems import ApiProblem
from api.schemas import Snapshot
from api.security import Principal, reader
from api.streams import Message, encode, event_message, follow, sse_frame
from db import events, fleet, status
from db.errors import FleetError

log = logging.getLogger("fleet.streams")
# A stream that cannot read the database closes with this code (WebSocket) or ends with a
# `retry:` (SSE): both mean "come back in a moment and resume from your last seq".
DATABASE_DOWN = (DBAPIError, psycopg.Error)
UNAVAILABLE = 4503
UNAVAILABLE_REASON = "the database is unavailable: reconnect and resume from your last seq"
RETRY_MS = 2000
SHUTDOWN_REASON = "the server is restarting: reconnect and resume from your last seq"
router = APIRouter(prefix="/api/availability", tags=["real-time"])

# Beyond this many events a client is better served by a fresh snapshot than a replay.
MAX_CHANGES = 5000
SinceQuery = Annotated[
    int | None, Query(ge=0, description="Resume after this event sequence number.")
]
LocationQuery = Annotated[int | None, Query(ge=1, description="Only this location.")]
VehicleQuery = Annotated[int | None, Query(ge=1, description="Only this vehicle.")]


@router.get(
    "/realtime",
    response_model=Snapshot,
    summary="The fleet now, with the event sequence it is consistent with",
    description="Without `since`: every vehicle (filtered). With `since=SEQ`: only the events "
    "after SEQ and the current state of the vehicles they touched, so a polling client stays "
    "current cheaply. `full` says which you got (a very old `since` gets a full snapshot).",
)
def realtime(
    request: Request,
    since: SinceQuery = None,
    location_id: LocationQuery = None,
    _: Principal = Depends(reader),
) -> Snapshot:
    # One REPEATABLE READ snapshot: the rows and `seq` describe the same moment.
    with transaction(request, read_only=True) as conn:
        seq = events.latest_seq(conn)
        now = datetime.now(UTC)
        if since is not None and since > seq:
            raise ApiProblem(
                422,
                f"since={since} is ahead of the newest event ({seq})",
                code="invalid_input",
                field="since",
                hint="use the seq of a snapshot or event you received",
            )
        if since is not None:
            changed = events.events_since(
                conn, after_seq=since, limit=MAX_CHANGES + 1, location_id=None
            )
            if len(changed) <= MAX_CHANGES:
                touched = sorted({e["vehicle_id"] for e in changed if e["vehicle_id"]})
                vehicles = status.list_status(conn, vehicle_ids=touched, limit=len(touched) or 1)
                if location_id is not None:
                    # A car that left the lot is reported too, so the client can drop it.
                    keep = {e["vehicle_id"] for e in changed if e["location_id"] == location_id} | {
                        v.vehicle_id for v in vehicles if v.location_id == location_id
                    }
                    vehicles = [v for v in vehicles if v.vehicle_id in keep]
                    changed = [
                        e
                        for e in changed
                        if e["vehicle_id"] in keep
                        or (e["vehicle_id"] is None and e["location_id"] in (None, location_id))
                    ]
                return Snapshot(
                    seq=seq,
                    full=False,
                    since=since,
                    vehicles=vehicles,
                    events=[event_message(e) for e in changed],
                    as_of=now,
                )
        vehicles = status.list_status(conn, location_id=location_id, limit=100_000)
        counts = status.status_counts(conn)
        if location_id is not None:
            code = fleet.get_location(conn, id=location_id).code
            counts = [c for c in counts if c["location"] == code]
    return Snapshot(seq=seq, full=True, since=since, vehicles=vehicles, counts=counts, as_of=now)


def _check_origin(conn: WebSocket | Request, principal: Principal) -> None:
    # Browsers send cookies on cross-site WebSocket handshakes; only our own pages may use them.
    if principal.via == "session" and not same_origin(conn.scope):
        raise ApiProblem(403, "cross-origin stream request refused", code="forbidden")


@router.websocket("/realtime")
async def realtime_socket(
    websocket: WebSocket,
    since: SinceQuery = None,
    location_id: LocationQuery = None,
    vehicle_id: VehicleQuery = None,
    coalesce: Annotated[float, Query(ge=0, le=60)] = 0.0,
) -> None:
    """Stream events as JSON messages; resume with ?since=; heartbeats every few seconds."""
    try:
        principal = await asyncio.to_thread(
            security.authenticate_request, websocket, query_token=True
        )
        _check_origin(websocket, principal)
    except (FleetError, ApiProblem) as exc:
        # Accept first, then close with a code: a browser can read 4401/4403 and sign in
        # again, where a refused handshake only says "failed".
        code = 4403 if isinstance(exc, ApiProblem) else 4401
        await websocket.accept()
        await websocket.close(code=code, reason=str(exc)[:120])
        return
    except DATABASE_DOWN:
        await websocket.accept()
        await websocket.close(code=UNAVAILABLE, reason=UNAVAILABLE_REASON)
        return
    await websocket.accept()
    app = websocket.app
    stream = follow(
        app.state.broadcaster,
        since=since,
        location_id=location_id,
        vehicle_id=vehicle_id,
        heartbeat=app.state.settings.heartbeat_seconds,
        coalesce=coalesce,
        credentials=app.state.credentials,
        principal=principal,
    )
    # Reading from the socket notices a client that went away even while nothing is sent.
    reader_task = asyncio.create_task(_drain_incoming(websocket))
    try:
        async for message in stream:
            if reader_task.done():
                break
            await websocket.send_text(encode(message))
            if message["type"] == "reload":
                await websocket.close(code=4409, reason="reload the snapshot")
                break
            if message["type"] == "unauthorized":
                await websocket.close(code=4401, reason=message["reason"][:120])
                break
        else:
            if app.state.broadcaster.closing:
                # 1012 "service restart": reconnect (to another process) and resume.
                await websocket.close(code=1012, reason=SHUTDOWN_REASON)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    except DATABASE_DOWN:
        # The catch-up read met a database that is away: a close frame the client reads as
        # "retry", never an unanswered handshake or an ASGI error.
        log.warning("stream catch-up failed: the database is unavailable")
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await websocket.close(code=UNAVAILABLE, reason=UNAVAILABLE_REASON)
    finally:
        reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader_task
        await stream.aclose()


async def _drain_incoming(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.receive_text()


@router.get(
    "/events",
    summary="Server-Sent Events stream of availability changes",
    description="Each event has `id:` = its sequence number, so EventSource resumes with "
    "Last-Event-ID by itself. `event: heartbeat` comes every few seconds; `event: reload` "
    "means the client fell too far behind and must fetch a new snapshot. `coalesce=N` "
    "sends at most one `event: batch` every N seconds. Compressed when gzip is accepted.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def event_stream(
    request: Request,
    since: SinceQuery = None,
    location_id: LocationQuery = None,
    vehicle_id: VehicleQuery = None,
    coalesce: Annotated[float, Query(ge=0, le=60)] = 0.0,
) -> StreamingResponse:
    principal = await asyncio.to_thread(security.authenticate_request, request, query_token=True)
    _check_origin(request, principal)
    last_id = request.headers.get("last-event-id")
    if last_id is not None:
        if not last_id.strip().isdigit():
            raise ApiProblem(
                422, "Last-Event-ID must be an event sequence number", field="Last-Event-ID"
            )
        since = int(last_id)
    app = request.app
    gzip = "gzip" in request.headers.get("accept-encoding", "")
    stream = follow(
        app.state.broadcaster,
        since=since,
        location_id=location_id,
        vehicle_id=vehicle_id,
        heartbeat=app.state.settings.heartbeat_seconds,
        coalesce=coalesce,
        credentials=app.state.credentials,
        principal=principal,
    )

    async def body() -> AsyncIterator[bytes]:
        # Each frame is flushed through the compressor so the client gets it at once.
        packer = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip else None
        try:
            yield _pack(packer, f"retry: {RETRY_MS}\n\n")
            try:
                async for message in stream:
                    frame = message.sse() if isinstance(message, Message) else sse_frame(message)
                    yield _pack(packer, frame)
                    if message["type"] in ("reload", "unauthorized"):
                        break
            except DATABASE_DOWN:
                # The catch-up read met a database that is away: end the stream cleanly;
                # EventSource comes back after `retry` and resumes from its Last-Event-ID.
                log.warning("stream catch-up failed: the database is unavailable")
                yield _pack(packer, f"retry: {RETRY_MS}\n\n")
            if packer is not None:
                yield packer.flush(zlib.Z_FINISH)
        finally:
            await stream.aclose()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if gzip:
        headers["Content-Encoding"] = "gzip"
        headers["Vary"] = "Accept-Encoding"
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


def _pack(packer: zlib._Compress | None, text: str) -> bytes:
    data = text.encode()
    if packer is None:
        return data
    return packer.compress(data) + packer.flush(zlib.Z_SYNC_FLUSH)
