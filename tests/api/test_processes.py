"""More than one server process on one database: a change through one reaches every other."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import free_port
from tests.api.streams_client import open_ws, read_until


@pytest.fixture
def second_server(database_url: str, tmp_path: Path) -> Iterator[str]:
    """`fleet serve --workers 2` as its own OS process group on the same database."""
    port = free_port()
    env = {
        **os.environ,
        "FLEET_DATABASE_URL": database_url,
        "FLEET_DATA_DIR": str(tmp_path),
        "FLEET_SECRET_KEY": "test-secret-key-not-for-production",
        "FLEET_HEARTBEAT_SECONDS": "1",
        "FLEET_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleet.cli.main", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"second server did not start: {proc.stdout.read().decode()[-2000:]}")
        time.sleep(0.3)
    yield url
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


def test_change_through_one_process_reaches_clients_of_the_others(api, second_server):
    v = api.vehicles[0]
    # Several clients on the two-worker server land on both of its processes.
    sockets = [open_ws(second_server, api.tokens["agent"]) for _ in range(6)]
    try:
        with api.client("agent") as c:
            r = c.put(f"/api/vehicles/{v.id}/status", json={"status": "cleaning", "reason": "A"})
        assert r.status_code == 200
        for ws in sockets:
            got = read_until(ws, lambda g: any(m["vehicle_id"] == v.id for m in g))
            assert [m["data"]["status"] for m in got if m["vehicle_id"] == v.id] == ["cleaning"]
        # And back: a change through the second server reaches a client of the first.
        first = open_ws(api.url, api.tokens["agent"])
        with httpx.Client(
            base_url=second_server, headers={"Authorization": f"Bearer {api.tokens['agent']}"}
        ) as c:
            r = c.put(f"/api/vehicles/{v.id}/status", json={"status": "available", "reason": "B"})
        assert r.status_code == 200
        got = read_until(first, lambda g: any(m["vehicle_id"] == v.id for m in g))
        first.close()
        assert [m["data"]["status"] for m in got if m["vehicle_id"] == v.id] == ["available"]
    finally:
        for ws in sockets:
            ws.close()
