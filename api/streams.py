"""Live events: one LISTEN connection per process fans committed events out to stream clients.

The events table is the truth and `seq` its order (numbered at commit, see migration 0002);
NOTIFY only says "look now". The broadcaster reads `seq > last` after every notification and
once a second regardless, so missed notifications (a dropped connection, a database restart)
cost latency, never events. A client joins by registering its queue and noting the
broadcaster's position in the same event-loop step, then backfilling from the table up to
that position: every event reaches it exactly once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Engine

from api import metrics
from api.credentials import CredentialWatch
from api.security import Principal
from db.database import LISTENER_KEEPALIVES
from db.events import CHANNEL, EVENT_COLUMNS, events_since, latest_seq, to_json

log = logging.getLogger("fleet.streams")

_FETCH_SQL = (
    f"SELECT {EVENT_COLUMNS} FROM availability_events"  # noqa: S608 - fixed column list
    " WHERE seq > %s ORDER BY seq LIMIT %s"
)
_BATCH = 2000
# A safety net under NOTIFY: how often to look even when nothing was announced.
_POLL_SECONDS = 1.0
# The listener's reconnect delays: from the first to the cap, doubling, each jittered.
_BACKOFF_FIRST = 0.2
_BACKOFF_CAP = 1.0


class Message(dict):
    """A message for clients that encodes itself once, however many clients it goes to."""

    __slots__ = ("_json", "_sse")

    def json(self) -> str:
        try:
            return self._json
        except AttributeError:
            self._json = to_json(self)
            return self._json

    def sse(self) -> str:
        try:
            return self._sse
        except AttributeError:
            self._sse = sse_frame(self)
            return self._sse


def encode(message: dict[str, Any]) -> str:
    """Return the JSON text of a message (cached for shared event messages)."""
    return message.json() if isinstance(message, Message) else to_json(message)


def event_message(row: dict[str, Any]) -> Message:
    """Shape an events row as clients receive it."""
    return Message(
        type="event",
        seq=row["seq"],
        kind=row["kind"],
        vehicle_id=row["vehicle_id"],
        location_id=row["location_id"],
        actor_id=row["actor_id"],
        at=row["created_at"].isoformat(),
        data=row["payload"],
    )


@dataclass(eq=False)
class Subscriber:
    """One stream client: its filters and a bounded queue of messages."""

    location_id: int | None = None
    vehicle_id: int | None = None
    queue_size: int = 1000
    queue: asyncio.Queue[dict[str, Any]] = field(init=False)
    overflowed: bool = False
    # Why the client's credential ended (revoked, expired, ...); the stream then closes.
    ended: str | None = None

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.queue_size)

    def wants(self, message: dict[str, Any]) -> bool:
        if self.vehicle_id is not None and message["vehicle_id"] != self.vehicle_id:
            return False
        return self.location_id is None or message["location_id"] == self.location_id

    def end(self, reason: str) -> None:
        """The credential that opened this stream ended: wake the stream so it closes."""
        self.ended = reason
        self.wake()

    def wake(self) -> None:
        """Make the stream look at its state (ended, server closing) now."""
        # A wake-up only (seq 0 is never sent); a full queue wakes the stream anyway.
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait({"type": "wake", "seq": 0})

    def offer(self, message: dict[str, Any]) -> None:
        if self.overflowed or not self.wants(message):
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # A stuck client must not hold memory or slow the others: drop it, tell it to reload.
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            metrics.QUEUE_DROPS.inc()


class Broadcaster:
    """Follows the events table for this process and feeds every subscriber."""

    def __init__(self, engine: Engine, libpq_url: str, queue_size: int = 1000) -> None:
        self.engine = engine
        self.libpq_url = libpq_url
        self.queue_size = queue_size
        self.last_seq = 0
        self.connected = False
        # The server is shutting down: every stream ends, so clients resume elsewhere.
        self.closing = False
        self.subscribers: set[Subscriber] = set()
        self.listeners: set[Callable[[list[dict[str, Any]]], None]] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start following from the newest committed event."""
        self.last_seq = await asyncio.to_thread(self._latest)
        self._task = asyncio.create_task(self._run(), name="fleet-broadcaster")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def close(self) -> None:
        """End every stream now (the server is stopping); new ones end at once too."""
        self.closing = True
        for sub in self.subscribers:
            sub.wake()

    def _latest(self) -> int:
        with self.engine.connect() as conn:
            return latest_seq(conn)

    def subscribe(self, location_id: int | None, vehicle_id: int | None) -> tuple[Subscriber, int]:
        """Register a client; return it and the position live delivery starts after."""
        sub = Subscriber(location_id, vehicle_id, self.queue_size)
        self.subscribers.add(sub)
        metrics.STREAM_CLIENTS.set(len(self.subscribers))
        return sub, self.last_seq

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        metrics.STREAM_CLIENTS.set(len(self.subscribers))

    async def _run(self) -> None:
        backoff = _BACKOFF_FIRST
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.libpq_url,
                    autocommit=True,
                    row_factory=dict_row,
                    connect_timeout=2,
                    application_name="fleet-listener",
                    **LISTENER_KEEPALIVES,
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connected = True
                    metrics.LISTENER_UP.set(1)
                    if backoff > _BACKOFF_FIRST:
                        log.info(
                            "event listener reconnected; catching up from seq %s", self.last_seq
                        )
                    backoff = _BACKOFF_FIRST
                    await self._follow(conn)
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                if self.connected:
                    log.warning("event listener lost the database: %s", exc.__class__.__name__)
                self.connected = False
                metrics.LISTENER_UP.set(0)
                # Capped at a second so a database back from a restart is followed again
                # within the streams' 2 s promise; jittered so the processes of a fleet of
                # servers do not reconnect in lockstep.
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, _BACKOFF_CAP)

    async def _follow(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> None:
        # Catch up first: anything committed while we were away is in the table.
        await self._drain(conn)
        while True:
            woken = False
            # One wake-up is enough: the read below takes everything committed so far.
            async for _ in conn.notifies(timeout=_POLL_SECONDS, stop_after=1):
                woken = True
            if not await self._drain(conn) and not woken:
                await self._check_rewound(conn)

    async def _check_rewound(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> None:
        # A restored or truncated database numbers from a lower seq again: follow it down,
        # or every new event would look old and never be sent.
        # The sequence, not max(seq): archiving may empty the table without rewinding it.
        cur = await conn.execute(
            "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS seq"
            " FROM availability_events_seq_seq"
        )
        newest = (await cur.fetchone())["seq"]
        if newest < self.last_seq:
            log.warning("event sequence went back from %s to %s; following", self.last_seq, newest)
            self.last_seq = newest

    async def _drain(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> int:
        sent = 0
        while True:
            cur = await conn.execute(_FETCH_SQL, (self.last_seq, _BATCH))
            rows = await cur.fetchall()
            if not rows:
                return sent
            self.publish([event_message(r) for r in rows])
            sent += len(rows)
            if len(rows) < _BATCH:
                return sent

    def publish(self, messages: list[dict[str, Any]]) -> None:
        """Hand events (in seq order, all above last_seq) to every subscriber and listener."""
        for message in messages:
            for sub in self.subscribers:
                sub.offer(message)
        self.last_seq = messages[-1]["seq"]
        metrics.LAST_SENT_SEQ.set(self.last_seq)
        for listener in list(self.listeners):
            try:
                listener(messages)
            except Exception:  # a page's callback must not stop the stream for everyone
                log.exception("event listener callback failed")


def _latest_seq(engine: Engine) -> int:
    with engine.connect() as conn:
        return latest_seq(conn)


def backfill(engine: Engine, *, after: int, upto: int, sub: Subscriber) -> list[dict[str, Any]]:
    """Read the events a client missed, (after, upto], with its filters; runs in a thread."""
    out: list[dict[str, Any]] = []
    with engine.connect() as conn:
        cursor = after
        while cursor < upto:
            rows = events_since(
                conn,
                after_seq=cursor,
                limit=_BATCH,
                location_id=sub.location_id,
                vehicle_id=sub.vehicle_id,
            )
            rows = [r for r in rows if r["seq"] <= upto]
            if not rows:
                break
            out.extend(event_message(r) for r in rows)
            cursor = rows[-1]["seq"]
            if len(out) > sub.queue_size * 10:
                sub.overflowed = True
                return []
    return out


async def follow(
    broadcaster: Broadcaster,
    *,
    since: int | None,
    location_id: int | None,
    vehicle_id: int | None,
    heartbeat: float,
    coalesce: float = 0.0,
    credentials: CredentialWatch | None = None,
    principal: Principal | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield the messages of one client: backfill, then live events, heartbeats, batches.

    With `credentials`, the stream ends with an `unauthorized` message once the principal's
    token is revoked, expires or its user is deactivated.
    """
    sub, cut = broadcaster.subscribe(location_id, vehicle_id)
    watch = None
    if credentials is not None and principal is not None:
        watch = credentials.watch(principal.token_id, principal.expires_at, sub.end)
    try:
        if since is not None and since > cut:
            # Ahead of this process: it may only lag, or the cursor is from another database
            # (a restore, a rewound sequence). The table decides, as for the snapshot.
            newest = await asyncio.to_thread(_latest_seq, broadcaster.engine)
            if since > newest:
                yield {
                    "type": "reload",
                    "seq": newest,
                    "reason": f"since={since} is ahead of the newest event ({newest}): fetch a"
                    " new snapshot (GET /api/availability/realtime) and resume from its seq",
                }
                return
        sent = cut if since is None else since
        # The heartbeat interval tells a client how long silence may last before it should
        # count the connection dead.
        yield {"type": "hello", "seq": cut if since is None else since, "heartbeat": heartbeat}
        if since is not None and since < cut:
            missed = await asyncio.to_thread(
                backfill, broadcaster.engine, after=since, upto=cut, sub=sub
            )
            for message in missed:
                yield message
            sent = cut
        next_beat = time.monotonic() + heartbeat
        while True:
            if broadcaster.closing:
                return
            if sub.ended is not None:
                yield {"type": "unauthorized", "seq": sent, "reason": sub.ended}
                return
            if sub.overflowed:
                yield {
                    "type": "reload",
                    "seq": broadcaster.last_seq,
                    "reason": "too far behind: fetch a new snapshot (GET"
                    " /api/availability/realtime) and resume from its seq",
                }
                return
            timeout = max(0.0, next_beat - time.monotonic())
            try:
                if sub.queue.empty():
                    # asyncio.timeout, not wait_for: no task per wait, which at hundreds of
                    # clients and many events a second is most of the fan-out's cost.
                    async with asyncio.timeout(timeout):
                        message = await sub.queue.get()
                else:
                    message = sub.queue.get_nowait()
            except TimeoutError:
                yield {
                    "type": "heartbeat",
                    "seq": broadcaster.last_seq,
                    "live": broadcaster.connected,
                }
                next_beat = time.monotonic() + heartbeat
                continue
            batch = [message]
            if coalesce > 0:
                await asyncio.sleep(coalesce)
                while not sub.queue.empty():
                    batch.append(sub.queue.get_nowait())
            batch = [m for m in batch if m["seq"] > sent]
            if not batch:
                continue
            sent = batch[-1]["seq"]
            if coalesce > 0:
                yield {"type": "batch", "seq": sent, "events": batch}
            else:
                for m in batch:
                    yield m
            next_beat = time.monotonic() + heartbeat
    finally:
        broadcaster.unsubscribe(sub)
        if watch is not None:
            credentials.unwatch(watch)


def sse_frame(message: dict[str, Any]) -> str:
    """Encode a message as one Server-Sent Events frame."""
    body = encode(message)
    if message["type"] == "event":
        # Default event type so EventSource.onmessage sees it; id lets the browser resume.
        return f"id: {message['seq']}\ndata: {body}\n\n"
    if message["type"] == "batch":
        return f"id: {message['seq']}\nevent: batch\ndata: {body}\n\n"
    return f"event: {message['type']}\ndata: {body}\n\n"
