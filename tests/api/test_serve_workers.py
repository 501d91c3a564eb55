"""`fleet serve --workers 2` as a real process group: orphans, replaced workers, prompt exit."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.api.conftest import free_port
from tests.api.streams_client import open_ws

# Our promise for a stop is 2 s; a loaded 2-core machine gets this much on top.
GRACE = 1.5
STOP_SECONDS = 2.0


def _processes() -> list[tuple[int, str, int, int]]:
    """Every process as (pid, state, ppid, process group), from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: split after it.
        state, ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        out.append((int(entry.name), state, int(ppid), int(pgrp)))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until condition() holds; return the seconds it took, or fail saying what."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - start


class Served:
    """`fleet serve --workers 2` in its own process group, its output collected as it comes."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "FLEET_DATABASE_URL": database_url,
            "FLEET_DATA_DIR": str(data_dir),
            "FLEET_SECRET_KEY": "test-secret-key-not-for-production",
            "FLEET_HEARTBEAT_SECONDS": "1",
            "FLEET_LOG_LEVEL": "WARNING",
        }
        command = ["serve", "--port", str(self.port), "--workers", "2"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fleet.cli.main", *command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid = self.proc.pid
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.append(line.decode(errors="replace"))

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not (self.ready() and len(self.workers()) == 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"fleet serve did not start: {self.output[-3000:]}")
            time.sleep(0.2)

    def workers(self) -> list[int]:
        """The live worker processes of the supervisor (children of its fork server)."""
        processes = _processes()
        servers = {
            pid
            for pid, _, ppid, _ in processes
            if ppid == self.proc.pid and "forkserver" in _cmdline(pid)
        }
        return [pid for pid, state, ppid, _ in processes if ppid in servers and state != "Z"]

    def group(self) -> list[int]:
        """Processes of the group that still run (zombies have let go of everything)."""
        return [pid for pid, state, _, pgrp in _processes() if pgrp == self.pgid and state != "Z"]

    def kill_all(self) -> None:
        for pid in self.group():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def port_free(port: int) -> bool:
    """True if a new server could listen on the port (as uvicorn binds: SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
        return True


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Served]:
    server = Served(database_url, tmp_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.kill_all()


def test_killing_the_supervisor_ends_its_workers_and_frees_the_port(served):
    workers = served.workers()
    os.kill(served.proc.pid, signal.SIGKILL)
    served.proc.wait(timeout=10)
    # The workers stop as soon as they notice (at once), then take their own stop's 2 s.
    wait_for(
        lambda: not set(workers) & set(served.group()),
        STOP_SECONDS + GRACE + 2,
        f"orphaned workers {workers} still running; output: {served.output[-2000:]}",
    )
    assert port_free(served.port), "the port is still taken: a restart would fail"
    assert not served.ready()


def test_a_killed_worker_is_replaced_and_the_supervisor_says_so(served):
    victim, survivor = served.workers()
    os.kill(victim, signal.SIGKILL)
    message = f"worker [{victim}] died (killed by SIGKILL); started worker ["
    wait_for(
        lambda: message in served.output,
        30,
        f"the supervisor did not log the replacement; output: {served.output[-2000:]}",
    )
    wait_for(
        lambda: len(served.workers()) == 2 and victim not in served.workers(),
        30,
        f"no second worker again: {served.workers()}",
    )
    assert survivor in served.workers()
    replacement = served.output.split(message)[1].split("]")[0]
    assert int(replacement) in served.workers()
    wait_for(served.ready, 30, "the server is not ready again")


def _open_sse(url: str, token: str) -> tuple[httpx.Client, httpx.Response]:
    client = httpx.Client(base_url=url, timeout=httpx.Timeout(10, read=5))
    request = client.build_request(
        "GET", "/api/availability/events", headers={"Authorization": f"Bearer {token}"}
    )
    response = client.send(request, stream=True)
    assert response.status_code == 200
    return client, response


def test_sigterm_ends_open_streams_and_exits_within_two_seconds(served, api):
    token = api.tokens["agent"]
    sockets = [open_ws(served.url, token) for _ in range(4)]
    streams = [_open_sse(served.url, token) for _ in range(4)]
    lines = []
    for _, response in streams:
        frames = response.iter_lines()
        # Read up to the hello: the stream is open and followed by a worker.
        while "hello" not in next(frames):
            pass
        lines.append(frames)

    os.killpg(served.pgid, signal.SIGTERM)
    took = wait_for(
        lambda: not served.group(),
        STOP_SECONDS + GRACE + 5,
        f"the server did not exit; output: {served.output[-2000:]}",
    )

    for ws in sockets:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                json.loads(ws.recv(timeout=5))
        assert closed.value.rcvd is not None, "no close frame"
        assert closed.value.rcvd.code == 1012
    for frames in lines:
        # The body ends cleanly (EventSource comes back after its retry); no reset.
        for line in frames:
            assert "event: reload" not in line
    for client, response in streams:
        response.close()
        client.close()
    served.proc.wait(timeout=5)
    assert "timeout graceful shutdown exceeded" not in served.output
    assert "Traceback" not in served.output, served.output[-3000:]
    assert took < STOP_SECONDS + GRACE, f"took {took:.2f} s; output: {served.output[-2000:]}"
