"""The live streams end to end: real server, real WebSocket and SSE clients, real commits."""

from __future__ import annotations

import random
import threading
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from db import events, status
from tests.api.streams_client import ResumingWsReader, open_ws, read_until, sse_events


def _seq(engine) -> int:
    with engine.connect() as c:
        return events.latest_seq(c)


def _flip(client: httpx.Client, vehicle_id: int, n: int) -> str:
    """Change a vehicle's status n times as fast as the API allows; return the final status."""
    current = "available"
    for i in range(n):
        current = "cleaning" if current == "available" else "available"
        r = client.put(
            f"/api/vehicles/{vehicle_id}/status", json={"status": current, "reason": f"flip {i}"}
        )
        assert r.status_code == 200, r.text
    return current


def _status_events(messages, vehicle_id):
    return [m for m in messages if m["kind"] == "status_changed" and m["vehicle_id"] == vehicle_id]


def test_rapid_changes_reach_ten_clients_in_order_ending_in_the_final_state(api, engine):
    v = api.vehicles[0]
    start = _seq(engine)
    sockets = [open_ws(api.url, api.tokens["agent"], since=start) for _ in range(10)]
    try:
        with api.client("agent") as c:
            final = _flip(c, v.id, 20)
        for ws in sockets:
            got = _status_events(read_until(ws, lambda g: len(g) >= 20), v.id)
            seqs = [m["seq"] for m in got]
            assert len(got) == 20 and seqs == sorted(seqs)
            assert [m["data"]["version"] for m in got] == list(range(2, 22))
            assert got[-1]["data"]["status"] == final
    finally:
        for ws in sockets:
            ws.close()


def test_websocket_negotiates_compression(api):
    ws = open_ws(api.url, api.tokens["agent"])
    try:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
    finally:
        ws.close()
    assert "permessage-deflate" in extensions


def test_websocket_resumes_from_since_without_gaps_or_repeats(api, engine):
    v = api.vehicles[1]
    start = _seq(engine)
    ws = open_ws(api.url, api.tokens["agent"], since=start)
    with api.client("agent") as c:
        _flip(c, v.id, 3)
        first = read_until(ws, lambda g: len(g) >= 3)
        ws.close()
        _flip_from = "available" if first[-1]["data"]["status"] == "cleaning" else "cleaning"
        r = c.put(f"/api/vehicles/{v.id}/status", json={"status": _flip_from, "reason": "x"})
        assert r.status_code == 200
    ws = open_ws(api.url, api.tokens["agent"], since=first[-1]["seq"])
    try:
        rest = read_until(ws, lambda g: len(g) >= 1, timeout=5)
        more = read_until(ws, lambda g: len(g) >= 1, timeout=1.5)
    finally:
        ws.close()
    assert [m["data"]["version"] for m in first + rest] == [2, 3, 4, 5]
    assert more == []


def test_filters_deliver_only_that_vehicle(api, engine):
    a, b = api.vehicles[0], api.vehicles[1]
    ws = open_ws(api.url, api.tokens["agent"], since=_seq(engine), vehicle_id=b.id)
    try:
        with api.client("agent") as c:
            _flip(c, a.id, 2)
            _flip(c, b.id, 1)
        got = read_until(ws, lambda g: len(g) >= 1)
        extra = read_until(ws, lambda g: len(g) >= 1, timeout=1.0)
    finally:
        ws.close()
    assert [m["vehicle_id"] for m in got + extra] == [b.id]


def test_heartbeats_arrive_when_nothing_changes(api):
    ws = open_ws(api.url, api.tokens["agent"])
    try:
        import json

        kinds = [json.loads(ws.recv(timeout=5))["type"] for _ in range(2)]
    finally:
        ws.close()
    assert kinds == ["heartbeat", "heartbeat"]


def test_coalesced_clients_get_batches(api, engine):
    v = api.vehicles[2]
    ws = open_ws(api.url, api.tokens["agent"], since=_seq(engine), coalesce=0.5)
    try:
        with api.client("agent") as c:
            _flip(c, v.id, 4)
        import json

        batches = []
        deadline = time.monotonic() + 5
        while sum(len(b["events"]) for b in batches) < 4 and time.monotonic() < deadline:
            m = json.loads(ws.recv(timeout=5))
            if m["type"] == "batch":
                batches.append(m)
    finally:
        ws.close()
    flat = [e for b in batches for e in b["events"]]
    assert len(flat) == 4 and len(batches) < 4
    assert batches[-1]["seq"] == flat[-1]["seq"]


def test_sse_stream_is_compressed_and_resumes_with_last_event_id(api, engine):
    v = api.vehicles[3]
    start = _seq(engine)
    with api.client("agent") as c:
        _flip(c, v.id, 4)
    got, _, headers = sse_events(
        api.url, api.tokens["agent"], last_event_id=start, until=lambda g: len(g) >= 2
    )
    assert headers["content-encoding"] == "gzip"
    assert [m["data"]["version"] for m in got[:2]] == [2, 3]
    rest, _, _ = sse_events(
        api.url,
        api.tokens["agent"],
        last_event_id=got[1]["seq"],
        until=lambda g: len(g) >= 2,
    )
    assert [m["data"]["version"] for m in rest] == [4, 5]


def test_sse_sends_heartbeats(api):
    _, kinds, _ = sse_events(
        api.url, api.tokens["agent"], until=lambda g: False, timeout=2.5, gzip=False
    )
    assert "heartbeat" in kinds


def test_streams_refuse_missing_and_forged_credentials(api):
    for token in (None, "forged-token"):
        with pytest.raises(ConnectionClosed) as closed:
            open_ws(api.url, token)
        assert closed.value.rcvd.code == 4401  # a code the client can act on: sign in
    r = httpx.get(f"{api.url}/api/availability/events", timeout=5)
    assert r.status_code == 401 and r.json()["code"] == "not_authenticated"


def test_many_writers_and_a_reader_reconnecting_at_random_get_every_event_once(api, engine):
    """Commits interleave out of id order; a resuming client still sees each event once."""
    start = _seq(engine)
    reader = ResumingWsReader(api.url, api.tokens["agent"], since=start)
    rng = random.Random(11)
    writers = 6

    def write(n: int) -> None:
        vehicle = api.vehicles[n % len(api.vehicles)]
        for i in range(15):
            with engine.begin() as c:
                current = status.get_status(c, vehicle_id=vehicle.id, for_update=True).status
                new = "cleaning" if current == "available" else "available"
                status.change_status(
                    c,
                    vehicle_id=vehicle.id,
                    new_status=new,
                    changed_by=api.world.agent.id,
                    reason=f"writer {n} step {i}",
                )
                events.emit(c, kind="test_marker", payload={"writer": n, "i": i})
                if rng.random() < 0.3:
                    c.exec_driver_sql("SELECT pg_sleep(0.01)")  # a slow commit

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        reader.read(rng.uniform(0.05, 0.4))
        reader.drop()  # the network drops; the client resumes from its last seq
    for t in threads:
        t.join()
    expected = _seq(engine)
    deadline = time.monotonic() + 10
    while reader.seq < expected and time.monotonic() < deadline:
        reader.read(0.5)
    reader.drop()
    with engine.connect() as c:
        truth = [e["seq"] for e in events.events_since(c, after_seq=start, limit=10_000)]
    assert [m["seq"] for m in reader.events] == truth
    assert len(truth) == writers * 15 * 2


def test_listener_recovers_from_a_killed_database_connection(api, engine, live_server):
    """The database drops the server's LISTEN connection (as on restart); nothing is lost."""
    v = api.vehicles[0]
    start = _seq(engine)
    reader = ResumingWsReader(api.url, api.tokens["agent"], since=start)
    reader.connect()
    with api.client("agent") as c:
        _flip(c, v.id, 2)
        with engine.begin() as conn:
            killed = conn.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'fleet-listener'"
            ).scalar()
        assert killed >= 1
        _flip(c, v.id, 2)  # committed while the listener is away
    reader.read(4)
    reader.drop()
    versions = [m["data"]["version"] for m in _status_events(reader.events, v.id)]
    assert versions == [2, 3, 4, 5]
    with httpx.Client(base_url=api.url) as c:
        deadline = time.monotonic() + 10
        while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert c.get("/readyz").json()["checks"]["listener"] is True
