"""The snapshot and its sequence: load it, then follow from exactly there (or poll with since)."""

from __future__ import annotations

import json
import logging

from api import logs
from tests.api.streams_client import open_ws, read_until


def test_snapshot_then_stream_from_its_seq_misses_nothing(api):
    v = api.vehicles[0]
    with api.client("agent") as c:
        snap = c.get("/api/availability/realtime").json()
        assert snap["full"] is True
        assert {x["plate"] for x in snap["vehicles"]} >= {x.plate for x in api.vehicles}
        # A change lands between the snapshot and the stream connecting.
        c.put(f"/api/vehicles/{v.id}/status", json={"status": "cleaning", "reason": "between"})
        ws = open_ws(api.url, api.tokens["agent"], since=snap["seq"])
        try:
            got = read_until(ws, lambda g: len(g) >= 1)
        finally:
            ws.close()
    assert [(m["vehicle_id"], m["data"]["status"]) for m in got] == [(v.id, "cleaning")]


def test_polling_with_since_returns_only_the_changes(api):
    a, b = api.vehicles[0], api.vehicles[1]
    with api.client("agent") as c:
        seq = c.get("/api/availability/realtime").json()["seq"]
        c.put(f"/api/vehicles/{a.id}/status", json={"status": "maintenance", "reason": "oil"})
        delta = c.get("/api/availability/realtime", params={"since": seq}).json()
        again = c.get("/api/availability/realtime", params={"since": delta["seq"]}).json()
        ahead = c.get("/api/availability/realtime", params={"since": delta["seq"] + 100})
    assert delta["full"] is False and delta["seq"] > seq
    assert [v["vehicle_id"] for v in delta["vehicles"]] == [a.id]
    assert delta["vehicles"][0]["status"] == "maintenance"
    assert b.id not in {e["vehicle_id"] for e in delta["events"]}
    assert again["vehicles"] == [] and again["events"] == []
    assert ahead.status_code == 422 and ahead.json()["field"] == "since"


def test_snapshot_by_location(api):
    with api.client("agent") as c:
        snap = c.get("/api/availability/realtime", params={"location_id": api.world.muc.id}).json()
    assert snap["vehicles"] == []  # the test fleet is all in Berlin


def test_metrics_report_routes_clients_and_lag(api):
    ws = open_ws(api.url, api.tokens["agent"])
    try:
        with api.client("analyst") as c:
            c.get(f"/api/vehicles/{api.vehicles[0].id}/status")
            text = c.get("/metrics").text
    finally:
        ws.close()
    assert 'route="/api/vehicles/{vehicle_id}/status"' in text
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith(("fleet_stream_clients", "fleet_events_lag"))
    }
    assert values["fleet_stream_clients"] >= 1  # our socket (others may still be closing)
    assert values["fleet_events_lag"] >= 0


def test_json_logs_carry_the_request_id(capsys):
    loggers = [logging.getLogger(n) for n in ("fleet", "uvicorn.error")]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    logs.configure("json", "INFO")
    token = logs.request_id.set("req-123")
    try:
        logging.getLogger("fleet.test").info("hello %s", "world")
    finally:
        logs.request_id.reset(token)
        # Put the server's handlers back: these ones write to capsys's stream, closed soon.
        for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["message"] == "hello world" and record["request_id"] == "req-123"


def test_snapshots_are_gzip_compressed_when_asked(api):
    with api.client("agent") as c:
        r = c.get("/api/availability/realtime", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert int(r.headers["content-length"]) < len(r.content)  # httpx decoded it for us
